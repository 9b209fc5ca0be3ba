# The shape of a Node app (issue 18): dependencies, a build stage on them, and a runtime
# stage that installs its own dependencies and copies the build's output last. Sleeps
# stand for the package manager and the bundler (no network). Scheduled by step
# dependencies, runtime's RUN runs beside deps; level by level it waits for deps and
# build.
FROM busybox AS deps
WORKDIR /app
COPY files/f01.txt ./package.json
RUN sleep 2 && mkdir node_modules && echo dev > node_modules/all

FROM deps AS build
COPY files/ ./src/
RUN sleep 3 && mkdir dist && cat src/* > dist/app.js

FROM busybox AS runtime
WORKDIR /app
COPY files/f01.txt ./package.json
RUN sleep 2 && mkdir node_modules && echo prod > node_modules/prod
COPY --from=build /app/dist ./dist
CMD ["cat", "dist/app.js"]
