# GPU image: TensorFlow 2.18.1 + Horovod (NCCL, Gloo) + this project.
#
#   docker build -t effdet-v2 .
#   docker run --gpus all --rm -v /data:/data -v $PWD/runs:/runs effdet-v2 \
#       horovodrun -np 8 python main.py --mode train --config configs/efficientdet-d0-coco.yaml \
#       --model_dir /runs/d0 --train_file_pattern '/data/coco/train-*'
#
# Multi-node: see the README ("Distributed training").
FROM tensorflow/tensorflow:2.18.1-gpu

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The TensorFlow GPU image carries the CUDA runtime libraries only. Building
# Horovod's NCCL operations also needs the CUDA compiler, the runtime headers,
# the driver stub and NCCL's headers, for the CUDA version of the image.
# ssh lets horovodrun start ranks on other machines.
RUN cuda="${CUDA_VERSION:-$(python -c 'import json; print(json.load(open("/usr/local/cuda/version.json"))["cuda"]["version"])' 2>/dev/null)}" \
 && [[ -n "$cuda" ]] || { echo "cannot tell the image's CUDA version (CUDA_VERSION unset)" >&2; exit 1; } \
 && major_minor="$(cut -d. -f1,2 <<<"$cuda")" && suffix="${major_minor/./-}" \
 && apt-get update \
 && nccl="$(apt-cache madison libnccl-dev | awk -v c="+cuda${major_minor}" 'index($3, c) { print $3; exit }')" \
 && [[ -n "$nccl" ]] || { echo "no libnccl-dev built for CUDA ${major_minor} in the apt sources" >&2; exit 1; } \
 && apt-get install -y --no-install-recommends \
      "cuda-nvcc-${suffix}" "cuda-cudart-dev-${suffix}" "cuda-driver-dev-${suffix}" \
      "libnccl2=${nccl}" "libnccl-dev=${nccl}" \
      cmake make g++ libfarmhash-dev openssh-client openssh-server \
 && apt-mark hold libnccl2 libnccl-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /workspace/effdet
COPY requirements.txt requirements-horovod.txt ./
RUN python -m pip install -r requirements.txt

# No GPU during `docker build`: link against the driver stub, ask for NCCL explicitly.
COPY scripts/install_horovod.sh scripts/
RUN ldconfig /usr/local/cuda/lib64/stubs \
 && HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_CUDA_HOME=/usr/local/cuda \
      HOROVOD_NCCL_INCLUDE=/usr/include HOROVOD_NCCL_LIB=/usr/lib/x86_64-linux-gnu \
      bash scripts/install_horovod.sh python \
 && ldconfig \
 && horovodrun --check-build

COPY . .
RUN python -m pip install --no-deps -e .

# Plain `docker run IMAGE` prints the flags; pass `python main.py ...` or
# `horovodrun -np N python main.py ...` as the command.
CMD ["python", "main.py", "--helpshort"]
