// Replays fuzz inputs without libFuzzer: each argument is a file or a folder
// of files (a seed corpus, or regression inputs that once crashed), fed to
// LLVMFuzzerTestOneInput one by one. A failing property aborts, so ctest
// reports the input that broke it (printed before each run).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

int run_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "cannot read %s\n", p.c_str());
    return 1;
  }
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::fprintf(stderr, "replay %s (%zu bytes)\n", p.c_str(), bytes.size());
  // A copy of exactly `size` bytes, so ASan catches a read past the end.
  std::vector<uint8_t> buf(bytes.begin(), bytes.end());
  LLVMFuzzerTestOneInput(buf.data(), buf.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int files = 0, errors = 0;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path arg(argv[i]);
    std::error_code ec;
    if (std::filesystem::is_directory(arg, ec)) {
      std::vector<std::filesystem::path> paths;
      for (const auto& e : std::filesystem::directory_iterator(arg)) {
        if (e.is_regular_file()) paths.push_back(e.path());
      }
      std::sort(paths.begin(), paths.end());
      for (const auto& p : paths) {
        errors += run_file(p);
        ++files;
      }
    } else {
      errors += run_file(arg);
      ++files;
    }
  }
  if (files == 0) {
    std::fprintf(stderr, "no inputs replayed\n");
    return 1;
  }
  std::fprintf(stderr, "%d inputs replayed, %d unreadable\n", files, errors);
  return errors == 0 ? 0 : 1;
}
