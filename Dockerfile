FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api_client api_client
COPY tagger tagger
COPY worker worker
COPY jobs jobs
COPY training training
RUN pip install ./api_client .
RUN useradd --create-home tagger
USER tagger
ENTRYPOINT ["tagger"]
CMD ["--help"]
