#pragma once
// The element types a safetensors file may declare, with their names and sizes in bits.
// Sub-byte types exist (F4, F6_*), so sizes are kept in bits, as the reference implementation does.

#include <cstdint>
#include <optional>
#include <string_view>

namespace ddm::io {

enum class dtype : std::uint8_t {
  boolean, u8, i8, f8_e5m2, f8_e4m3, f8_e8m0, f8_e4m3fnuz, f8_e5m2fnuz, i16, u16, f16, bf16,
  i32, u32, f32, c64, f64, i64, u64, f4, f6_e2m3, f6_e3m2,
};

namespace detail {
struct dtype_entry {
  dtype type;
  std::string_view name;
  unsigned bits;
};
inline constexpr dtype_entry dtype_table[] = {
    {dtype::boolean, "BOOL", 8},       {dtype::u8, "U8", 8},
    {dtype::i8, "I8", 8},              {dtype::f8_e5m2, "F8_E5M2", 8},
    {dtype::f8_e4m3, "F8_E4M3", 8},    {dtype::f8_e8m0, "F8_E8M0", 8},
    {dtype::f8_e4m3fnuz, "F8_E4M3FNUZ", 8}, {dtype::f8_e5m2fnuz, "F8_E5M2FNUZ", 8},
    {dtype::i16, "I16", 16},           {dtype::u16, "U16", 16},
    {dtype::f16, "F16", 16},           {dtype::bf16, "BF16", 16},
    {dtype::i32, "I32", 32},           {dtype::u32, "U32", 32},
    {dtype::f32, "F32", 32},           {dtype::c64, "C64", 64},
    {dtype::f64, "F64", 64},           {dtype::i64, "I64", 64},
    {dtype::u64, "U64", 64},           {dtype::f4, "F4", 4},
    {dtype::f6_e2m3, "F6_E2M3", 6},    {dtype::f6_e3m2, "F6_E3M2", 6},
};
[[nodiscard]] constexpr const dtype_entry& dtype_lookup(dtype t) noexcept {
  for (const auto& e : dtype_table)
    if (e.type == t) return e;
  return dtype_table[0];  // unreachable: every enumerator is in the table
}
}  // namespace detail

/// The name used in safetensors headers ("F32", "BF16", ...).
[[nodiscard]] constexpr std::string_view name_of(dtype t) noexcept { return detail::dtype_lookup(t).name; }

/// Size of one element in bits.
[[nodiscard]] constexpr unsigned bits_of(dtype t) noexcept { return detail::dtype_lookup(t).bits; }

/// The dtype with this header name, or nothing for a name the format does not define.
[[nodiscard]] constexpr std::optional<dtype> dtype_from_name(std::string_view name) noexcept {
  for (const auto& e : detail::dtype_table)
    if (e.name == name) return e.type;
  return std::nullopt;
}

/// Whether values of this dtype can be read into float or double (F16, BF16, F32, F64).
[[nodiscard]] constexpr bool is_readable_as_float(dtype t) noexcept {
  return t == dtype::f16 || t == dtype::bf16 || t == dtype::f32 || t == dtype::f64;
}

}  // namespace ddm::io
