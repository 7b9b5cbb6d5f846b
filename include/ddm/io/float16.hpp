#pragma once
// Conversions between float and the two 16-bit floating-point storage formats of checkpoints:
// IEEE binary16 ("F16") and bfloat16 ("BF16", the upper half of a binary32).
//
// Widening (16 -> 32 bits) is exact. Narrowing rounds to nearest, ties to even, as PyTorch's
// `tensor.to(torch.bfloat16 / torch.float16)` does: overflow gives infinity, values below half the
// smallest binary16 subnormal flush to a signed zero, and NaN stays NaN (quiet, sign kept).

#include <bit>
#include <cstdint>

namespace ddm::io {

/// bfloat16 bits -> float (exact: a bfloat16 is a float with the low 16 mantissa bits zero).
[[nodiscard]] constexpr float bf16_to_float(std::uint16_t bits) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

/// float -> bfloat16 bits, rounding to nearest with ties to even.
[[nodiscard]] constexpr std::uint16_t float_to_bf16(float value) noexcept {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(value);
  if ((u & 0x7fffffffu) > 0x7f800000u)  // NaN: truncating could turn it into infinity
    return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
  // Adding 0x7fff plus the lowest kept bit rounds half-way cases to the even neighbour; a carry
  // into the exponent is the correct result (up to infinity).
  const std::uint32_t lsb = (u >> 16) & 1u;
  return static_cast<std::uint16_t>((u + 0x7fffu + lsb) >> 16);
}

/// IEEE binary16 bits -> float (exact, subnormals included).
[[nodiscard]] constexpr float f16_to_float(std::uint16_t bits) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  std::uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1f)  // infinity or NaN (payload kept)
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0)  // normal: rebias 15 -> 127
    return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  if (mantissa == 0) return std::bit_cast<float>(sign);
  // Subnormal: value = mantissa * 2^-24; normalize it into a binary32 normal.
  std::uint32_t e = 113;  // exponent field of 2^-14, the binary16 subnormal scale times 2^10
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    --e;
  }
  return std::bit_cast<float>(sign | (e << 23) | ((mantissa & 0x3ffu) << 13));
}

/// float -> IEEE binary16 bits, rounding to nearest with ties to even (subnormals included).
[[nodiscard]] constexpr std::uint16_t float_to_f16(float value) noexcept {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u)  // NaN: keep the top payload bits and make sure it stays a NaN
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u)  // >= 65520 = half-way between 65504 (largest binary16) and 2^16: infinity
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  if (a >= 0x38800000u) {  // >= 2^-14: a binary16 normal; rebias and round away 13 bits
    const std::uint32_t rebased = a - (112u << 23);
    const std::uint32_t lsb = (rebased >> 13) & 1u;
    return static_cast<std::uint16_t>(sign | ((rebased + 0xfffu + lsb) >> 13));
  }
  if (a < 0x33000000u)  // < 2^-25, under half the smallest subnormal (2^-25 itself ties to 0 below)
    return sign;
  // Subnormal result: value / 2^-24 rounded to an integer, ties to even. The implicit bit is
  // made explicit and the mantissa shifted right by the exponent deficit.
  const std::uint32_t exponent = a >> 23;               // 102..112
  const std::uint32_t mantissa = (a & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126u - exponent;          // 14..24
  const std::uint32_t kept = mantissa >> shift;
  const std::uint32_t rest = mantissa & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1u);
  const std::uint32_t rounded = kept + ((rest > half || (rest == half && (kept & 1u))) ? 1u : 0u);
  return static_cast<std::uint16_t>(sign | rounded);
}

}  // namespace ddm::io
