#pragma once
// mapped_file: the bytes of a whole file, read-only, for as long as the object lives.
//
// On POSIX systems the file is memory-mapped, so opening a multi-gigabyte checkpoint costs
// nothing until its pages are touched and only the tensors actually read are paged in. Elsewhere
// the file is read into memory. Either way the bytes may sit at any alignment relative to the
// types stored in them: read them with std::memcpy, never through a reinterpreted pointer.

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddm/core/error.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define DDM_IO_HAVE_MMAP 1
#else
#define DDM_IO_HAVE_MMAP 0
#endif

namespace ddm::io {

class mapped_file {
 public:
  mapped_file() = default;

  /// Maps (or reads) the whole file. Throws ddm::io_error naming the file and the system error.
  explicit mapped_file(std::filesystem::path path) : path_(std::move(path)) {
#if DDM_IO_HAVE_MMAP
    // O_NONBLOCK: opening a FIFO (or a device) for reading would otherwise wait for a writer
    // before the regular-file check below could refuse it. The check is on the descriptor, not
    // a stat of the path beforehand, so a path swapped for a FIFO between the two cannot slip
    // through; on a regular file O_NONBLOCK changes nothing, and mmap ignores it.
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) fail_("cannot open", errno);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      fail_("cannot stat", err);
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      throw io_error(ddm::concat("ddm::io::mapped_file: '", path_.string(), "' is not a regular file"));
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ != 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        fail_("cannot map", err);
      }
      data_ = static_cast<const std::byte*>(p);
    }
    ::close(fd);  // the mapping keeps the file alive
#else
    std::ifstream in(path_, std::ios::binary);
    if (!in) fail_("cannot open", errno);
    in.seekg(0, std::ios::end);
    const auto end = in.tellg();
    in.seekg(0, std::ios::beg);
    owned_.resize(static_cast<std::size_t>(end));
    if (!owned_.empty() && !in.read(reinterpret_cast<char*>(owned_.data()), end)) fail_("cannot read", errno);
    data_ = owned_.data();
    size_ = owned_.size();
#endif
  }

  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& other) noexcept { swap_(other); }
  mapped_file& operator=(mapped_file&& other) noexcept {
    if (this != &other) {
      release_();
      swap_(other);
    }
    return *this;
  }
  ~mapped_file() { release_(); }

  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  [[noreturn]] void fail_(const char* what, int err) const {
    throw io_error(ddm::concat("ddm::io::mapped_file: ", what, " '", path_.string(), "': ",
                                       std::strerror(err)));
  }
  void release_() noexcept {
#if DDM_IO_HAVE_MMAP
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
#endif
    data_ = nullptr;
    size_ = 0;
  }
  void swap_(mapped_file& other) noexcept {
    std::swap(path_, other.path_);
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
#if !DDM_IO_HAVE_MMAP
    std::swap(owned_, other.owned_);
#endif
  }

  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
#if !DDM_IO_HAVE_MMAP
  std::vector<std::byte> owned_;
#endif
};

}  // namespace ddm::io
