# The base of every R model's image: R with jsonlite, Node 24 and modelship. A build script's
# install.packages() goes to the model's library, /model/R, as the model's user (10001); the
# build then makes /model root's and read-only.
#   docker build -f kustomize/images/runtime-r.Dockerfile -t ghcr.io/modelship/runtime-r:0.1.0 .
# The bases are build arguments, for a mirror or an air-gapped registry.
ARG NODE_IMAGE=node:24-bookworm-slim
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${NODE_IMAGE} AS node
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
  && apt-get install -y --no-install-recommends r-base-core r-cran-jsonlite ca-certificates \
  && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
WORKDIR /opt/modelship
COPY package.json package-lock.json .npmrc ./
RUN node /usr/local/lib/node_modules/npm/bin/npm-cli.js ci --omit=dev --ignore-scripts \
  && rm -rf /root/.npm /usr/local/lib/node_modules/npm
COPY bin bin
COPY controller controller
COPY schemas schemas
COPY runtime runtime
RUN ln -s /opt/modelship/bin/modelship.js /usr/local/bin/modelship \
  && useradd --uid 10001 --create-home model \
  && mkdir -p /model/R && chown -R 10001:10001 /model
ENV R_LIBS_USER=/model/R
USER 10001
