# syntax=docker/dockerfile:1
# Moderator in a container: one run per container, on the repository mounted at /workspace.
#   docker build -t moderator .
#   docker run --rm --init -v "$PWD/todo:/workspace" -p 127.0.0.1:8080:8080 moderator demo --keep-serving
# compose.yaml wires the same with secrets from the environment; docker/smoke.sh tests the image.

# ---- build: compile better-sqlite3 and the TypeScript, then drop the dev dependencies ----------
FROM node:20-bookworm-slim AS build
# better-sqlite3 compiles from source when no prebuilt binary can be downloaded.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# Without scripts, so the dependency layer does not need the sources (`prepare` builds them);
# then the one native module is built on its own.
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm rebuild better-sqlite3
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY main.ts errors.ts ./
COPY protocol ./protocol
COPY cli ./cli
COPY config ./config
COPY machines ./machines
COPY actors ./actors
COPY services ./services
COPY server ./server
COPY demos/todo-cli/session.json ./demos/todo-cli/session.json
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# ---- runtime: Node 20, git, the built JavaScript, a non-root user ---------------------------
FROM node:20-bookworm-slim
# git for the target repository; ca-certificates for the model APIs and GitHub over HTTPS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY docker/entrypoint.sh docker/healthcheck.js ./docker/
# The server listens on every interface of the container; compose.yaml publishes it on the
# host's 127.0.0.1 unless an intervention token is set (DUO_AGENT_MONITOR_TOKEN).
ENV NODE_ENV=production \
    DUO_AGENT_WORKSPACE=/workspace \
    DUO_AGENT_MONITOR_HOST=0.0.0.0 \
    DUO_AGENT_MONITOR_PORT=8080
# The `node` user (uid 1000) of the base image owns the workspace; its database, logs and task
# worktrees live in /workspace/.duo-agent, so the one volume keeps a run resumable.
RUN mkdir -p /workspace && chown node:node /workspace
USER node
VOLUME /workspace
EXPOSE 8080
# Healthy while a run (or --keep-serving) serves /api/health and does not report itself unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD node /app/docker/healthcheck.js "http://127.0.0.1:${DUO_AGENT_MONITOR_PORT}/api/health"
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["--help"]
