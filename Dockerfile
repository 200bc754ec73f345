# Build stage: resolve the locked dependencies into a virtual environment.
FROM python:3.11-slim AS build
ENV UV_PROJECT_ENVIRONMENT=/app/.venv UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY api ./api
COPY alembic ./alembic
COPY alembic.ini ./
RUN uv sync --frozen --no-dev

# Runtime stage: the environment and the code, run as an unprivileged user.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 rebound
WORKDIR /app
COPY --from=build --chown=rebound:rebound /app /app
ENV PATH="/app/.venv/bin:$PATH" REBOUND_ENV=production PYTHONUNBUFFERED=1
USER rebound
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
CMD ["rebound", "serve", "--host", "0.0.0.0", "--port", "8000"]
