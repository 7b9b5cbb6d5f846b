// The safetensors snippet of docs/safetensors.md needs nothing beyond its own include; this
// prelude only names the link dependency (ddm::json) for tests/CMakeLists.txt.
#pragma once
#include <cstdio>
#include <string>
