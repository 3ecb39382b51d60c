# The base of every R model's image: R with jsonlite, Node 24 and modelship.
#   docker build -f kustomize/images/runtime-r.Dockerfile -t ghcr.io/modelship/runtime-r:0.1.0 .
FROM debian:bookworm-slim
RUN apt-get update \
  && apt-get install -y --no-install-recommends r-base-core r-cran-jsonlite ca-certificates \
  && rm -rf /var/lib/apt/lists/*
COPY --from=node:24-bookworm-slim /usr/local/bin/node /usr/local/bin/node
COPY --from=node:24-bookworm-slim /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
WORKDIR /opt/modelship
COPY package.json package-lock.json .npmrc ./
RUN node /usr/local/lib/node_modules/npm/bin/npm-cli.js ci --omit=dev --ignore-scripts \
  && rm -rf /root/.npm /usr/local/lib/node_modules/npm
COPY bin bin
COPY controller controller
COPY schemas schemas
COPY runtime runtime
RUN ln -s /opt/modelship/bin/modelship.js /usr/local/bin/modelship \
  && useradd --uid 10001 --create-home model && mkdir -p /model && chown model /model
USER 10001
