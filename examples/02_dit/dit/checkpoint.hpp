#pragma once
// A network's configuration read from its checkpoint, one reader for the three layouts.
//
// Structural sizes come from the tensor shapes, through the layout's tensor-name table
// (dit/tensor_names.hpp): width, channels and patch from the patch embedding, the latent size from
// the position table, the MLP width from the first block, the depth from the blocks present, the
// output channels (or expert count) from the output Linear. What shapes cannot reveal -- the head
// count above all, the LayerNorm epsilon, the text length, the latent size of a checkpoint stored
// without its position table, whether the DiT's last label row is the null class -- are
// `hyperparameters`, taken in this order:
//   1. the caller's (a command-line flag such as ddm-dit --heads, or a folder's config.json),
//   2. the checkpoint's safetensors metadata ("__metadata__": {"num_heads": "16", ...}),
//   3. the fallback the caller passes (for Paris, the released model's values).
// A value none of them gives is an error naming the file, the value and where it may come from.

#include <cmath>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <nlohmann/json.hpp>

#include <ddm/core/checked.hpp>
#include <ddm/core/error.hpp>
#include <ddm/io/safetensors.hpp>

#include "dit/config.hpp"
#include "dit/dit_model.hpp"
#include "dit/tensor_names.hpp"
#include "dit/weights.hpp"

namespace dit {

/// The values of a configuration that tensor shapes cannot reveal; unset means "not given here".
/// Metadata and config.json spell them as the members are named (config.json also as the
/// Hugging Face names num_attention_heads and max_text_length).
struct hyperparameters {
  std::optional<index_t> num_heads{};
  std::optional<double> layer_norm_eps{};
  std::optional<index_t> text_length{};  ///< Paris expert: tokens per prompt
  std::optional<index_t> input_size{};   ///< only read when the checkpoint has no pos_embed
  std::optional<index_t> num_classes{};  ///< DiT: without it, the label table's last row is the null class

  /// Each value unset here taken from `fallback`.
  [[nodiscard]] hyperparameters or_else(const hyperparameters& fallback) const {
    return {num_heads ? num_heads : fallback.num_heads, layer_norm_eps ? layer_norm_eps : fallback.layer_norm_eps,
            text_length ? text_length : fallback.text_length, input_size ? input_size : fallback.input_size,
            num_classes ? num_classes : fallback.num_classes};
  }
};

namespace keys {
// The metadata / config.json keys, in one place for the readers and for writers of checkpoints.
inline constexpr const char* num_heads = "num_heads";
inline constexpr const char* layer_norm_eps = "layer_norm_eps";
inline constexpr const char* text_length = "text_length";
inline constexpr const char* input_size = "input_size";
inline constexpr const char* num_classes = "num_classes";
}  // namespace keys

/// The hyperparameters a safetensors file's metadata holds. A value that is not a decimal integer
/// in [1, max_dimension] (a positive number for layer_norm_eps) is an io_error naming the file,
/// the key and the value.
[[nodiscard]] inline hyperparameters hyperparameters_from_metadata(const ddm::io::safetensors_file& file) {
  hyperparameters h;
  const auto& meta = file.metadata();
  auto bad = [&](const char* key, const std::string& v, const char* expected) {
    throw ddm::io_error(ddm::concat("dit: '", file.label(), "': metadata '", key, "' = '", v, "', expected ",
                                    expected));
  };
  auto integer = [&](const char* key, std::optional<index_t>& out) {
    const auto it = meta.find(key);
    if (it == meta.end()) return;
    const std::string& v = it->second;
    std::size_t used = 0;
    long long i = 0;
    try {
      i = std::stoll(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (v.empty() || used != v.size() || i < 1 || i > max_dimension) bad(key, v, "an integer in [1, 2147483647]");
    out = static_cast<index_t>(i);
  };
  integer(keys::num_heads, h.num_heads);
  integer(keys::text_length, h.text_length);
  integer(keys::input_size, h.input_size);
  integer(keys::num_classes, h.num_classes);
  if (const auto it = meta.find(keys::layer_norm_eps); it != meta.end()) {
    std::size_t used = 0;
    double e = 0;
    try {
      e = std::stod(it->second, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (it->second.empty() || used != it->second.size() || !(e > 0) || !std::isfinite(e))
      bad(keys::layer_norm_eps, it->second, "a finite number > 0");
    h.layer_norm_eps = e;
  }
  return h;
}

/// The hyperparameters a config.json holds (its text; `label` names it in messages). Integers
/// are sizes of the model: checked against max_dimension here, before anything multiplies them
/// ("text_length": 2^60 once overflowed into a null memcpy).
[[nodiscard]] inline hyperparameters hyperparameters_from_json(std::string_view text, const std::string& label) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    throw ddm::io_error(ddm::concat("dit: '", label, "' is not valid JSON: ", e.what()));
  }
  if (!j.is_object())
    throw ddm::io_error(ddm::concat("dit: '", label, "' is a JSON ", j.type_name(), ", expected an object"));
  auto read_int = [&](const char* key, std::optional<index_t>& out) {
    const auto it = j.find(key);
    if (it == j.end()) return false;
    const bool in_range = (it->is_number_unsigned() && it->get<std::uint64_t>() >= 1 &&
                           it->get<std::uint64_t>() <= static_cast<std::uint64_t>(max_dimension)) ||
                          (it->is_number_integer() && !it->is_number_unsigned() && it->get<std::int64_t>() >= 1 &&
                           it->get<std::int64_t>() <= max_dimension);
    if (!in_range)
      throw ddm::io_error(ddm::concat("dit: '", label, "': '", key, "' = ", it->dump(), ", expected an integer in [1, ",
                                      max_dimension, "]"));
    out = static_cast<index_t>(it->get<std::int64_t>());
    return true;
  };
  hyperparameters h;
  if (!read_int(keys::num_heads, h.num_heads)) read_int("num_attention_heads", h.num_heads);
  if (!read_int(keys::text_length, h.text_length)) read_int("max_text_length", h.text_length);
  read_int(keys::input_size, h.input_size);
  read_int(keys::num_classes, h.num_classes);
  if (j.contains(keys::layer_norm_eps)) {
    const auto& e = j[keys::layer_norm_eps];
    if (!e.is_number() || !(e.get<double>() > 0))
      throw ddm::io_error(ddm::concat("dit: '", label, "': 'layer_norm_eps' = ", e.dump(), ", expected a number > 0"));
    h.layer_norm_eps = e.get<double>();
  }
  return h;
}

/// The text of a config.json, or nothing when there is no such file.
[[nodiscard]] inline std::optional<std::string> read_config_json(const std::filesystem::path& file) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(file, ec);
  if (status.type() == fs::file_type::not_found) return std::nullopt;
  if (ec || status.type() != fs::file_type::regular)
    throw ddm::io_error(ddm::concat("dit: '", file.string(), "' is not a regular file",
                                    ec ? " (" + ec.message() + ")" : std::string(), ", expected a JSON object"));
  std::ifstream in(file, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof()) throw ddm::io_error(ddm::concat("dit: '", file.string(), "' cannot be read"));
  return text;
}

/// The sizes every layout reveals, read into `c` through `names` (see the header comment); `h`
/// (already merged with the metadata and the fallback) gives what shapes cannot. `where` names the
/// caller in messages.
inline void read_transformer_sizes(const ddm::io::safetensors_file& file, const tensor_names& names,
                                   const hyperparameters& h, const char* where, transformer_config& c) {
  const std::string patch = tensor_names::join(names.patch_embed, "weight");
  const std::string fc1 = names.in_block(0, tensor_names::join(names.fc1, "weight"));
  const std::string output = tensor_names::join(names.output, "weight");
  for (const auto& name : {patch, fc1, output})
    if (!file.contains(name))
      throw ddm::io_error(ddm::concat("dit: '", file.label(), "' has no tensor '", name, "': not a ", names.model,
                                      " checkpoint"));
  const auto& pe = file.info(patch).shape;
  if (pe.size() != 4 || pe[2] != pe[3] || file.info(fc1).shape.size() != 2 || file.info(output).shape.size() != 2)
    throw ddm::io_error(ddm::concat("ddm::io::safetensors: '", file.label(), "': the tensor shapes are not those of a ",
                                    names.model));
  // Every size is checked before it is used: (32, 4, 0, 0) is a valid empty tensor whose patch
  // would divide by zero below.
  c.hidden_size = shape_size(file, patch, 0, "hidden size (axis 0)");
  c.in_channels = shape_size(file, patch, 1, "input channels (axis 1)");
  c.patch_size = shape_size(file, patch, 2, "patch size (axis 2)");
  const std::string pos(names.pos_embed);
  if (file.contains(pos)) {
    if (file.info(pos).shape.size() != 3)
      throw ddm::io_error(ddm::concat("ddm::io::safetensors: '", file.label(), "': tensor '", pos, "' has shape ",
                                      shape_text(file.info(pos).shape), ", expected (1, tokens, hidden)"));
    const index_t tokens = shape_size(file, pos, 1, "token count (axis 1)");
    const auto grid = static_cast<index_t>(std::llround(std::sqrt(static_cast<double>(tokens))));
    c.input_size = ddm::checked_size(where, "grid x patch_size", grid, c.patch_size);
  } else if (h.input_size) {
    c.input_size = *h.input_size;
  } else {
    throw ddm::io_error(ddm::concat(where, ": '", file.label(), "' has no '", pos,
                                    "', so its shapes do not give the latent size: pass input_size (metadata "
                                    "'input_size', or the caller's hyperparameters)"));
  }
  c.mlp_ratio = mlp_ratio_for(shape_size(file, fc1, 0, "MLP width (axis 0)"), c.hidden_size);
  c.depth = count_blocks(file, std::string(names.block), "." + std::string(names.block_probe));
  if (h.layer_norm_eps) c.layer_norm_eps = *h.layer_norm_eps;
  if (!h.num_heads)
    throw ddm::io_error(ddm::concat(where, ": the head count of '", file.label(),
                                    "' is in neither its shapes nor its metadata ('num_heads'): pass it (ddm-dit "
                                    "--heads N for a DiT file, 'num_heads' in a Paris folder's config.json, or "
                                    "hyperparameters::num_heads). The DiT paper's models have S 6, B 12, L 16 and "
                                    "XL 16 heads"));
  c.num_heads = *h.num_heads;
}

/// An original DiT's configuration (facebookresearch/DiT layout): the sizes from the shapes,
/// learn_sigma from the output width (2C or C channels), the class count from the label table
/// (its last row the null class unless num_classes says the table has no such row), the head count
/// and anything else shapes cannot reveal from `given`, then the metadata. Not validated: the model
/// validates what it loads.
[[nodiscard]] inline dit_config dit_config_from_checkpoint(const ddm::io::safetensors_file& file,
                                                           const hyperparameters& given = {}) {
  const char* where = "dit::dit_config_from_checkpoint";
  const auto h = given.or_else(hyperparameters_from_metadata(file));
  dit_config c;
  read_transformer_sizes(file, original_dit_names, h, where, c);
  const index_t patch_values = ddm::checked_size(where, "patch_size x patch_size", c.patch_size, c.patch_size);
  const std::string out = tensor_names::join(original_dit_names.output, "weight");
  const index_t out_values = shape_size(file, out, 0, "output values per patch (axis 0)");
  if (out_values == 2 * patch_values * c.in_channels) {
    c.learn_sigma = true;
  } else if (out_values == patch_values * c.in_channels) {
    c.learn_sigma = false;
  } else {
    throw ddm::io_error(ddm::concat(where, ": '", file.label(), "': '", out, "' has ", out_values,
                                    " rows, expected patch_size^2 x in_channels (", patch_values * c.in_channels,
                                    ") or twice that (learned sigma)"));
  }
  const std::string labels = "y_embedder.embedding_table.weight";
  if (!file.contains(labels))
    throw ddm::io_error(ddm::concat(where, ": '", file.label(), "' has no tensor '", labels, "': not a DiT checkpoint"));
  const index_t rows = shape_size(file, labels, 0, "label count (axis 0)");
  if (h.num_classes) {
    if (rows != *h.num_classes && rows != *h.num_classes + 1)
      throw ddm::io_error(ddm::concat(where, ": '", file.label(), "': '", labels, "' has ", rows,
                                      " rows for num_classes = ", *h.num_classes, ", expected ", *h.num_classes,
                                      " or ", *h.num_classes + 1, " (with the null class)"));
    c.num_classes = *h.num_classes;
    c.null_class = rows == *h.num_classes + 1;
  } else {
    // DiT trains with class dropout (0.1), which adds the null-class row guidance needs.
    if (rows < 2)
      throw ddm::io_error(ddm::concat(where, ": '", file.label(), "': '", labels, "' has ", rows,
                                      " row, too few for classes and the null class; pass num_classes"));
    c.num_classes = rows - 1;
    c.null_class = true;
  }
  return c;
}

/// A Paris-style expert's configuration: the sizes from the shapes (text width from text_proj,
/// output channels from the final Linear), the rest from `given`, the metadata, then `fallback`
/// (defaults: none; load_paris passes the released model's values).
[[nodiscard]] inline paris_expert_config paris_expert_config_from_checkpoint(const ddm::io::safetensors_file& file,
                                                                             const hyperparameters& given = {},
                                                                             const hyperparameters& fallback = {}) {
  const char* where = "dit::paris_expert_config_from_checkpoint";
  const auto h = given.or_else(hyperparameters_from_metadata(file)).or_else(fallback);
  paris_expert_config c;
  read_transformer_sizes(file, paris_expert_names, h, where, c);
  if (!file.contains("text_proj.weight") || file.info("text_proj.weight").shape.size() != 2)
    throw ddm::io_error(ddm::concat("ddm::io::safetensors: '", file.label(),
                                    "': the tensor shapes are not those of a Paris-style expert"));
  c.text_dim = shape_size(file, "text_proj.weight", 1, "text width (axis 1)");
  if (h.text_length) c.text_length = *h.text_length;
  const index_t patch_values = ddm::checked_size(where, "patch_size x patch_size", c.patch_size, c.patch_size);
  c.out_channels = shape_size(file, "final_layer.linear.weight", 0, "output values per patch (axis 0)") / patch_values;
  return c;
}

/// A DiT router's configuration: the sizes from the shapes, the expert count from the head's last
/// Linear, the rest as for the expert.
[[nodiscard]] inline router_config router_config_from_checkpoint(const ddm::io::safetensors_file& file,
                                                                 const hyperparameters& given = {},
                                                                 const hyperparameters& fallback = {}) {
  const auto h = given.or_else(hyperparameters_from_metadata(file)).or_else(fallback);
  router_config c;
  read_transformer_sizes(file, paris_router_names, h, "dit::router_config_from_checkpoint", c);
  c.num_experts = shape_size(file, "head.4.weight", 0, "expert count (axis 0)");
  return c;
}

/// Loads an original DiT checkpoint (facebookresearch/DiT layout in safetensors) with the
/// configuration read from it (dit_config_from_checkpoint) into the memory of `ctx`.
template <class Space = ddm::host_space>
[[nodiscard]] std::shared_ptr<const dit_model<Space>> load_dit(const std::filesystem::path& path,
                                                               const hyperparameters& given = {},
                                                               const ddm::execution_context<Space>& ctx = {},
                                                               weight_storage storage = weight_storage::f32,
                                                               bool strict = true) {
  const ddm::io::safetensors_file file(path);
  return std::make_shared<const dit_model<Space>>(dit_config_from_checkpoint(file, given), file, strict, ctx, storage);
}

}  // namespace dit
