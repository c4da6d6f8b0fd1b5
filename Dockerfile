# natter's image: `docker build -t natter:0.1.0 .` (compose.yaml builds it too).
# Runs the TypeScript sources with tsx (a runtime dependency), so there is no compile step.

# Build stage: better-sqlite3 compiles from source, which needs python3, make and a C++ compiler.
# Only the installed node_modules leave this stage.
FROM node:20.20.2-bookworm-slim AS deps
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# tsx is in dependencies, so --omit=dev keeps everything `natter` needs at run time.
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

FROM node:20.20.2-bookworm-slim
ENV NODE_ENV=production
# Where natter keeps its own files if a setting leaves it to (e.g. a JWT secret when
# auth.jwtSecret is unset). compose.yaml configures everything, so nothing is written here.
ENV NATTER_DATA_DIR=/var/lib/natter
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
# Sources stay owned by root: the `node` user can read them but not change them.
COPY . .
RUN mkdir -p /var/lib/natter && chown node:node /var/lib/natter
USER node
EXPOSE 8080
ENTRYPOINT ["node", "--import", "tsx", "bin/natter.ts"]
CMD ["start"]
