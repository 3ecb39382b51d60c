# The modelship image: the controller, the gateway, and the build's init container
# (`modelship build-context`). Build from the repository root, after `npm run build` (the
# dashboard's files, controller/ui/dist, which `COPY controller` takes along):
#   npm run build && docker build -f kustomize/images/modelship.Dockerfile -t ghcr.io/modelship/modelship:0.1.0 .
# The base is a build argument, for a mirror or an air-gapped registry (the tests build it on a
# local Debian: test/images/build-bases.sh).
ARG NODE_IMAGE=node:24-bookworm-slim
FROM ${NODE_IMAGE}
WORKDIR /opt/modelship
COPY package.json package-lock.json .npmrc ./
# Production dependencies only; the image's own Node 24 runs the TypeScript directly.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY bin bin
COPY controller controller
COPY schemas schemas
COPY runtime runtime
RUN ln -s /opt/modelship/bin/modelship.js /usr/local/bin/modelship
USER 10001
ENTRYPOINT ["modelship"]
