// Stands in for CUDA's cuda_fp16.h when src/ops/cuda_emu compiles kernels.cu for the CPU.
#pragma once
#include "emu.h"
