# The base of every Python model's image: Python, Node 24 and modelship (the replica agent and
# the worker). A model's build adds its code and runs its build script on top (build-context.ts).
#   docker build -f kustomize/images/runtime-python.Dockerfile -t ghcr.io/modelship/runtime-python:0.1.0 .
FROM python:3.12-slim-bookworm
COPY --from=node:24-bookworm-slim /usr/local/bin/node /usr/local/bin/node
WORKDIR /opt/modelship
COPY package.json package-lock.json .npmrc ./
COPY --from=node:24-bookworm-slim /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN node /usr/local/lib/node_modules/npm/bin/npm-cli.js ci --omit=dev --ignore-scripts \
  && rm -rf /root/.npm /usr/local/lib/node_modules/npm
COPY bin bin
COPY controller controller
COPY schemas schemas
COPY runtime runtime
RUN ln -s /opt/modelship/bin/modelship.js /usr/local/bin/modelship \
  && useradd --uid 10001 --create-home model && mkdir -p /model && chown model /model
USER 10001
