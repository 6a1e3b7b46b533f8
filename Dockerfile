# The server image deploy/k8s and deploy/kserve run:  docker build -t hrnet-pose-server:0.1.0 .
# The model repository is not in the image: it is mounted (/models in deploy/k8s, /mnt/models in
# KServe), holding model_repository/ with hrnet_om/1/model.onnx from `make model`.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache

WORKDIR /app
COPY requirements.lock .
RUN pip install --no-cache-dir -r requirements.lock
COPY backend/ backend/
COPY hrnet/ hrnet/
COPY proto/ proto/

RUN useradd --uid 1000 --no-create-home --shell /usr/sbin/nologin server
USER 1000:1000
EXPOSE 8000 8001 8002
ENTRYPOINT ["python", "-m", "backend.server"]
CMD ["--model-repository=/models"]
