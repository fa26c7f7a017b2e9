# The kaizen-stream worker image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md hatch_build.py ./
COPY workers ./workers
COPY schemas ./schemas
RUN pip install --no-cache-dir .
ENV KAIZEN_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 6066
ENTRYPOINT ["kaizen-stream"]
CMD ["worker"]
