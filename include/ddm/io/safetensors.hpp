#pragma once
// Reading safetensors files (https://github.com/huggingface/safetensors).
//
// Requires nlohmann_json: link the CMake target ddm::json.
//
// Layout: an unsigned 64-bit little-endian header length N, N bytes of UTF-8 JSON mapping each
// tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (plus an optional
// "__metadata__" map of strings), then the byte buffer the offsets point into.
//
// The reader enforces every rule of the reference implementation, and reports a violation as a
// ddm::io_error that names the file, the tensor (where there is one) and the rule:
//   - the file holds at least the 8 bytes of the length, and N <= 100,000,000;
//   - the header fits in the file, is valid UTF-8 and valid JSON (leading and trailing
//     whitespace allowed, no byte-order mark), an object nesting at most 128 levels deep;
//   - every entry has a known dtype, a shape of non-negative integers and two integer offsets;
//     "__metadata__", when present, maps strings to strings;
//   - sorted by offset, the tensors tile the buffer from 0 with no gap and no overlap;
//   - each tensor's byte length equals prod(shape) x its element size (whole bytes, no overflow);
//   - the buffer ends exactly at the end of the file.
// Empty tensors (a zero dimension) and rank-0 scalars are valid. Values are not checked. Extra
// fields of an entry are ignored, as the reference does. Stricter than the reference, on purpose
// (docs/safetensors.md says why): no key may appear twice in one object.
//
// F16, BF16, F32 and F64 tensors read into float or double (F64 -> float rounds to nearest);
// other dtypes are available as raw bytes. Tensors may sit at any alignment in the file: values
// are copied out with memcpy.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "ddm/core/error.hpp"
#include "ddm/io/dtype.hpp"
#include "ddm/io/float16.hpp"
#include "ddm/io/mapped_file.hpp"

namespace ddm::io {

static_assert(std::endian::native == std::endian::little,
              "ddm::io::safetensors: safetensors data is little-endian; big-endian hosts are not supported");

/// The reference implementation's cap on the header length.
inline constexpr std::uint64_t safetensors_max_header_size = 100'000'000;
/// The deepest nesting of JSON containers a header may have (the header object is level 1):
/// serde_json's recursion limit, so that the reader accepts every nesting the reference does.
inline constexpr std::size_t safetensors_max_nesting = 128;

/// One tensor as the header declares it. Offsets are relative to the start of the byte buffer.
struct tensor_info {
  std::string name;
  io::dtype dtype = io::dtype::f32;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;

  /// Number of elements (1 for a rank-0 scalar, 0 when a dimension is 0).
  [[nodiscard]] std::uint64_t numel() const noexcept {
    std::uint64_t n = 1;
    for (const auto d : shape) n *= d;
    return n;
  }
  [[nodiscard]] std::uint64_t byte_size() const noexcept { return end - begin; }
};

/// A tensor shape as the error messages print it: "[2, 3]".
inline std::string shape_string(std::span<const std::uint64_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i != 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

namespace detail {

[[noreturn]] inline void fail_file(const std::string& label, const std::string& problem) {
  throw io_error(ddm::concat("ddm::io::safetensors: '", label, "': ", problem));
}
[[noreturn]] inline void fail_tensor(const std::string& label, std::string_view tensor, const std::string& problem) {
  throw io_error(ddm::concat("ddm::io::safetensors: '", label, "': tensor '", tensor, "': ", problem));
}

// Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF). Returns the offset
// of the first invalid byte, or npos.
inline std::size_t first_invalid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned lo = 0x80;
    unsigned hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xbf) return i;
    i += len;
  }
  return std::string_view::npos;
}

struct parsed_header {
  std::vector<tensor_info> tensors;  // sorted by offset
  std::map<std::string, std::string> metadata;
  std::uint64_t buffer_offset = 0;   // 8 + N
};

inline std::uint64_t read_u64_le(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Builds the header's JSON value in one pass, in time linear in its length: nlohmann's callback
// parser rescans a parent's elements each time one of its objects closes (quadratic in the
// number of tensors), and a linear search of the keys seen so far would be quadratic again.
// Rejects what a plain parse would let through:
//   - a key that appears twice in one object (serde_json, the reference's parser, keeps the last
//     one silently; a checkpoint whose tensor or metadata value depends on which duplicate wins
//     is ambiguous, so ddm refuses it, even when both copies are identical);
//   - containers nested deeper than safetensors_max_nesting (serde_json's recursion limit), so
//     that extra fields are ignored at any depth the reference accepts.
class header_builder final : public nlohmann::json_sax<nlohmann::json> {
 public:
  using json = nlohmann::json;
  header_builder(json& root, const std::string& label) : root_(root), label_(label) {}

  bool null() override { return put_(json(nullptr)); }
  bool boolean(bool v) override { return put_(json(v)); }
  // The lexer gives a number with a minus sign to number_integer. "-0" is therefore 0 here; the
  // reference reads it as the float -0.0, and so does ddm, so that a message shows "-0.0", not 0.
  bool number_integer(number_integer_t v) override { return put_(v == 0 ? json(-0.0) : json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return put_(json(v)); }
  bool number_float(number_float_t v, const string_t& /*text*/) override { return put_(json(v)); }
  bool string(string_t& v) override { return put_(json(std::move(v))); }
  bool binary(binary_t& v) override { return put_(json(std::move(v))); }

  bool start_object(std::size_t /*elements*/) override {
    open_(json::object());
    keys_.emplace_back();
    return true;
  }
  bool key(string_t& k) override {
    if (!keys_.back().insert(k).second) {
      if (stack_.size() == 1) fail_tensor(label_, k, "the name appears twice in the header");
      fail_file(label_, ddm::concat("the key '", k, "' appears twice in one object of the header",
                                            stack_.size() == 2 && in_metadata_ ? " ('__metadata__')" : ""));
    }
    if (stack_.size() == 1) in_metadata_ = k == "__metadata__";
    key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t /*elements*/) override {
    open_(json::array());
    return true;
  }
  bool end_array() override {
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& e) override {
    fail_file(label_, ddm::concat("the header is not valid JSON: ", e.what()));
  }

 private:
  // A value goes into the innermost open container (or becomes the root). Only the innermost
  // container grows, so the pointers to the open ones stay valid.
  json* place_(json&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json& parent = *stack_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();
    }
    json& slot = parent[key_];
    slot = std::move(v);
    return &slot;
  }
  bool put_(json&& v) {
    (void)place_(std::move(v));
    return true;
  }
  void open_(json&& container) {
    if (stack_.size() >= safetensors_max_nesting)
      fail_file(label_, ddm::concat("the header nests containers deeper than ", safetensors_max_nesting,
                                            " levels (the limit of the reference's JSON parser)"));
    stack_.push_back(place_(std::move(container)));
  }

  json& root_;
  const std::string& label_;
  std::vector<json*> stack_;
  std::vector<std::unordered_set<std::string>> keys_;
  std::string key_;
  bool in_metadata_ = false;
};

// Parses and validates the whole layout of a file held in `file`.
inline parsed_header parse_safetensors(std::span<const std::byte> file, const std::string& label) {
  using json = nlohmann::json;
  if (file.size() < 8)
    fail_file(label, ddm::concat("the file has ", file.size(),
                                         " bytes, expected at least the 8 bytes of the header length"));
  const std::uint64_t n = read_u64_le(file.data());
  if (n > safetensors_max_header_size)
    fail_file(label, ddm::concat("the header length is ", n, " bytes, more than the limit of ",
                                         safetensors_max_header_size));
  if (n > file.size() - 8)
    fail_file(label, ddm::concat("the header length is ", n, " bytes but only ", file.size() - 8,
                                         " bytes follow the length (truncated file?)"));
  const std::string_view text(reinterpret_cast<const char*>(file.data() + 8), static_cast<std::size_t>(n));
  if (const auto bad = first_invalid_utf8(text); bad != std::string_view::npos)
    fail_file(label, ddm::concat("the header is not valid UTF-8 (byte ", bad, " of the header)"));
  // nlohmann's parser stops at a NUL byte as if the input ended there; JSON allows none, and
  // zero padding after the object is not the whitespace the format permits.
  if (const auto nul = text.find('\0'); nul != std::string_view::npos)
    fail_file(label, ddm::concat("the header is not valid JSON: a NUL byte at byte ", nul, " of the header"));

  // nlohmann's lexer skips a byte-order mark; JSON text (RFC 8259) and the reference's parser
  // (serde_json) do not allow one.
  if (text.starts_with("\xEF\xBB\xBF"))
    fail_file(label, "the header is not valid JSON: it starts with a UTF-8 byte-order mark (EF BB BF)");

  json header;
  header_builder builder(header, label);
  try {
    (void)json::sax_parse(text.begin(), text.end(), &builder, nlohmann::detail::input_format_t::json,
                          /*strict=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    fail_file(label, ddm::concat("the header is not valid JSON: ", e.what()));
  }
  if (!header.is_object())
    fail_file(label, ddm::concat("the header is a JSON ", header.type_name(), ", expected an object"));

  parsed_header out;
  out.buffer_offset = 8 + n;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& value = it.value();
    if (name == "__metadata__") {
      if (value.is_null()) continue;
      if (!value.is_object())
        fail_file(label, ddm::concat("'__metadata__' is a JSON ", value.type_name(),
                                             ", expected an object of strings"));
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m->is_string())
          fail_file(label, ddm::concat("'__metadata__' entry '", m.key(), "' is a JSON ", m->type_name(),
                                               ", expected a string"));
        out.metadata.emplace(m.key(), m->get<std::string>());
      }
      continue;
    }
    if (!value.is_object())
      fail_tensor(label, name, ddm::concat("the entry is a JSON ", value.type_name(), ", expected an object"));
    tensor_info info;
    info.name = name;
    const auto dt = value.find("dtype");
    if (dt == value.end() || !dt->is_string()) fail_tensor(label, name, "'dtype' is missing or not a string");
    const auto parsed_dtype = dtype_from_name(dt->get_ref<const std::string&>());
    if (!parsed_dtype)
      fail_tensor(label, name, ddm::concat("unknown dtype '", dt->get_ref<const std::string&>(), "'"));
    info.dtype = *parsed_dtype;
    const auto sh = value.find("shape");
    if (sh == value.end() || !sh->is_array()) fail_tensor(label, name, "'shape' is missing or not an array");
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned())
        fail_tensor(label, name, ddm::concat("'shape' holds ", d.dump(), ", expected non-negative integers"));
      info.shape.push_back(d.get<std::uint64_t>());
    }
    const auto off = value.find("data_offsets");
    if (off == value.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      fail_tensor(label, name, "'data_offsets' is missing or not two non-negative integers [begin, end]");
    info.begin = (*off)[0].get<std::uint64_t>();
    info.end = (*off)[1].get<std::uint64_t>();
    out.tensors.push_back(std::move(info));
  }

  // Writers may order entries in any way; the buffer is checked in offset order.
  std::stable_sort(out.tensors.begin(), out.tensors.end(), [](const tensor_info& a, const tensor_info& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t expected_begin = 0;
  constexpr auto max = std::numeric_limits<std::uint64_t>::max();
  for (const auto& t : out.tensors) {
    // Reversed offsets first: [4, 0] is not a gap after the previous tensor but no range at all.
    if (t.end < t.begin)
      fail_tensor(label, t.name, ddm::concat("data_offsets [", t.begin, ", ", t.end, "] end before they begin"));
    if (t.begin != expected_begin)
      fail_tensor(label, t.name,
                  ddm::concat("data_offsets [", t.begin, ", ", t.end, "] ",
                                      t.begin > expected_begin ? "leave a gap" : "overlap the previous tensor",
                                      ": sorted by offset, tensors must tile the buffer from 0 and this one must "
                                      "begin at ",
                                      expected_begin));
    std::uint64_t elements = 1;
    for (const auto d : t.shape) {
      if (d != 0 && elements > max / d)
        fail_tensor(label, t.name, ddm::concat("the element count of shape ", shape_string(t.shape),
                                                       " overflows 64 bits"));
      elements *= d;
    }
    const unsigned bits = bits_of(t.dtype);
    if (elements > max / bits)
      fail_tensor(label, t.name, ddm::concat("the bit count of shape ", shape_string(t.shape), " x ",
                                                     name_of(t.dtype), " overflows 64 bits"));
    if ((elements * bits) % 8 != 0)
      fail_tensor(label, t.name, ddm::concat("shape ", shape_string(t.shape), " of ", name_of(t.dtype),
                                                     " is not a whole number of bytes"));
    const std::uint64_t bytes = elements * bits / 8;
    if (t.end - t.begin != bytes)
      fail_tensor(label, t.name,
                  ddm::concat("data_offsets [", t.begin, ", ", t.end, "] span ", t.end - t.begin,
                                      " bytes, but shape ", shape_string(t.shape), " of ", name_of(t.dtype),
                                      " needs ", bytes));
    expected_begin = t.end;
  }
  const std::uint64_t available = file.size() - out.buffer_offset;
  if (expected_begin != available)
    fail_file(label, ddm::concat("the tensors cover ", expected_begin, " bytes of the buffer but the file has ",
                                         available, " bytes after the header (",
                                         expected_begin > available ? "truncated file" : "trailing bytes", ")"));
  return out;
}

}  // namespace detail

/// A validated safetensors file, memory-mapped (or an in-memory copy of one).
class safetensors_file {
 public:
  /// Opens, maps and validates `path`. Throws ddm::io_error on any violation of the format.
  explicit safetensors_file(const std::filesystem::path& path) : label_(path.string()), storage_(mapped_file(path)) {
    init_();
  }

  /// Validates a file held in memory; `label` names it in error messages.
  [[nodiscard]] static safetensors_file from_bytes(std::vector<std::byte> bytes, std::string label = "<memory>") {
    return safetensors_file(std::move(bytes), std::move(label));
  }

  /// The path (or label) the file was opened from.
  [[nodiscard]] const std::string& label() const noexcept { return label_; }

  /// Every tensor, in the order of its data in the file.
  [[nodiscard]] const std::vector<tensor_info>& tensors() const noexcept { return header_.tensors; }

  /// The "__metadata__" map (empty when the file has none).
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const noexcept { return header_.metadata; }

  [[nodiscard]] bool contains(std::string_view name) const { return index_.find(std::string(name)) != index_.end(); }

  /// The header entry of `name`; ddm::io_error when the file has no such tensor.
  [[nodiscard]] const tensor_info& info(std::string_view name) const {
    const auto it = index_.find(std::string(name));
    if (it == index_.end()) detail::fail_tensor(label_, name, "not found in the file");
    return header_.tensors[it->second];
  }

  /// The tensor's bytes as stored (little-endian, row-major, any alignment).
  [[nodiscard]] std::span<const std::byte> raw(std::string_view name) const {
    const auto& t = info(name);
    return bytes_().subspan(static_cast<std::size_t>(header_.buffer_offset + t.begin),
                            static_cast<std::size_t>(t.byte_size()));
  }

  /// Checks that `name` exists and has exactly `expected` as its shape.
  void require_shape(std::string_view name, std::span<const std::uint64_t> expected) const {
    const auto& t = info(name);
    if (!std::equal(t.shape.begin(), t.shape.end(), expected.begin(), expected.end()))
      detail::fail_tensor(label_, name,
                          ddm::concat("has shape ", shape_string(t.shape), ", expected ",
                                              shape_string(expected)));
  }
  void require_shape(std::string_view name, std::initializer_list<std::uint64_t> expected) const {
    require_shape(name, std::span<const std::uint64_t>(expected.begin(), expected.size()));
  }

  /// Converts the tensor's values into `out` (float or double), which must hold numel() values.
  template <class T>
    requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
  void read_into(std::string_view name, std::span<T> out) const {
    const auto& t = info(name);
    if (out.size() != t.numel())
      detail::fail_tensor(label_, name,
                          ddm::concat("has ", t.numel(), " values (shape ", shape_string(t.shape),
                                              "), but the destination holds ", out.size()));
    const std::byte* src = raw(name).data();
    const std::size_t n = out.size();
    switch (t.dtype) {
      case dtype::f32:
        if constexpr (std::is_same_v<T, float>) {
          if (n != 0) std::memcpy(out.data(), src, n * sizeof(float));
        } else {
          for (std::size_t i = 0; i < n; ++i) out[i] = load_<float>(src, i);
        }
        break;
      case dtype::f64:
        for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(load_<double>(src, i));
        break;
      case dtype::f16:
        for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(f16_to_float(load_<std::uint16_t>(src, i)));
        break;
      case dtype::bf16:
        for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(bf16_to_float(load_<std::uint16_t>(src, i)));
        break;
      default:
        detail::fail_tensor(label_, name,
                            ddm::concat("has dtype ", name_of(t.dtype),
                                                ", which does not convert to a floating-point type (F16, BF16, F32 "
                                                "and F64 do); use raw()"));
    }
  }

  /// The tensor's values as a vector of T (float or double).
  template <class T>
    requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
  [[nodiscard]] std::vector<T> read(std::string_view name) const {
    std::vector<T> out(static_cast<std::size_t>(info(name).numel()));
    read_into(name, std::span<T>(out));
    return out;
  }

  /// The tensor's values, after checking that its shape is exactly `expected`.
  template <class T>
    requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
  [[nodiscard]] std::vector<T> read(std::string_view name, std::initializer_list<std::uint64_t> expected) const {
    require_shape(name, expected);
    return read<T>(name);
  }

 private:
  safetensors_file(std::vector<std::byte> bytes, std::string label)
      : label_(std::move(label)), storage_(std::move(bytes)) {
    init_();
  }

  void init_() {
    header_ = detail::parse_safetensors(bytes_(), label_);
    index_.reserve(header_.tensors.size());
    for (std::size_t i = 0; i < header_.tensors.size(); ++i) index_.emplace(header_.tensors[i].name, i);
  }

  [[nodiscard]] std::span<const std::byte> bytes_() const noexcept {
    if (const auto* m = std::get_if<mapped_file>(&storage_)) return m->bytes();
    const auto& v = std::get<std::vector<std::byte>>(storage_);
    return {v.data(), v.size()};
  }

  template <class U>
  [[nodiscard]] static U load_(const std::byte* base, std::size_t i) noexcept {
    U u;
    std::memcpy(&u, base + i * sizeof(U), sizeof(U));
    return u;
  }

  std::string label_;
  std::variant<mapped_file, std::vector<std::byte>> storage_;
  detail::parsed_header header_;
  std::unordered_map<std::string, std::size_t> index_;
};

}  // namespace ddm::io
