/// @file
/// Umbrella header: the whole dependency-free core. Tensor backends are opt-in:
/// `#include <skipstep/backend/eigen.hpp>` and `#include <skipstep/backend/xtensor.hpp>`.
#pragma once

#include "skipstep/version.hpp"
#include "skipstep/tensor.hpp"
#include "skipstep/prediction.hpp"
#include "skipstep/predictor.hpp"
#include "skipstep/schedule/noise_schedule.hpp"
#include "skipstep/schedule/timesteps.hpp"
#include "skipstep/step/noise_source.hpp"
#include "skipstep/step/sigma.hpp"
#include "skipstep/step/x0_transform.hpp"
#include "skipstep/step/affine_step.hpp"
#include "skipstep/step/ddim.hpp"
#include "skipstep/step/ddpm.hpp"
#include "skipstep/step/transitions.hpp"
#include "skipstep/random.hpp"
#include "skipstep/parallel.hpp"
#include "skipstep/sampler.hpp"
#include "skipstep/guidance.hpp"
