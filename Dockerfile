# GPU image: TensorFlow 2.18.1 + this project. Horovod (NCCL) is added by the
# distributed-training work; until then this image runs single-GPU jobs.
FROM tensorflow/tensorflow:2.18.1-gpu
WORKDIR /workspace/effdet
COPY requirements.txt .
RUN python -m pip install --no-cache-dir -r requirements.txt
COPY . .
RUN python -m pip install --no-cache-dir --no-deps -e .
ENTRYPOINT ["python", "main.py"]
