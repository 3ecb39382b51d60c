# The base of every Python model's image: Python, Node 24 and modelship (the replica agent and
# the worker). A model's build adds its code and runs its build script on top (build-context.ts),
# as the model's user (10001), installing into the environment /model/venv; the build then makes
# /model root's and read-only.
#   docker build -f kustomize/images/runtime-python.Dockerfile -t ghcr.io/modelship/runtime-python:0.1.0 .
# The bases are build arguments, for a mirror or an air-gapped registry.
ARG NODE_IMAGE=node:24-bookworm-slim
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
FROM ${NODE_IMAGE} AS node
FROM ${PYTHON_IMAGE}
COPY --from=node /usr/local/bin/node /usr/local/bin/node
WORKDIR /opt/modelship
COPY package.json package-lock.json .npmrc ./
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN node /usr/local/lib/node_modules/npm/bin/npm-cli.js ci --omit=dev --ignore-scripts \
  && rm -rf /root/.npm /usr/local/lib/node_modules/npm
COPY bin bin
COPY controller controller
COPY schemas schemas
COPY runtime runtime
RUN ln -s /opt/modelship/bin/modelship.js /usr/local/bin/modelship \
  && useradd --uid 10001 --create-home model \
  && python3 -m venv /model/venv && chown -R 10001:10001 /model
# `pip install` in a build script goes into the model's environment, which the worker runs.
# modelship's Python package (the SDK: track_metric, model_metrics) imports in build scripts
# too, as CDSW's cdsw library does; the worker puts it first on PYTHONPATH itself.
ENV VIRTUAL_ENV=/model/venv PATH=/model/venv/bin:$PATH PYTHONPATH=/opt/modelship/runtime/python
USER 10001
