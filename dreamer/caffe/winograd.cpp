// 3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3), for the CPU: see
// dreamer/caffe/winograd.py for the algorithm and the kernel transform. Each 6x6 input
// tile d becomes B^T d B; for each of the 36 tile positions k the transformed tiles of a
// chunk, (tiles x C_in), are multiplied by the transformed kernel U[k], (C_in x C_out);
// each tile's 36 products m become its 4x4 outputs A^T m A. The interpolation points are
// 0, 1, -1, 2, -2 and infinity, which give B^T and A^T below.
//
// All three steps run per chunk of tiles on one thread, the chunk's data staying in that
// core's cache: no pass over memory between them, no packing of the kernel at each call
// (it is packed once, by winograd.py) and one parallel region per convolution.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int kTile = 6, kOut = 4, kPositions = kTile * kTile;
constexpr int kLanes = 16;  // floats in a vector: one AVX-512 register (two AVX2 ones)
constexpr int kPanel = 32;  // output channels per packed kernel panel: two vectors
constexpr int kRows = 6;    // tiles per block of the matrix product: 6 x 2 accumulators

typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));

inline Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }
inline Vec broadcast(float x) { return Vec{} + x; }

// r = B^T d for six values d (floats, or vectors of channels)
template <typename T>
inline void times_bt(const T* d, T* r) {
  r[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
  r[1] = -4.0f * d[1] - 4.0f * d[2] + d[3] + d[4];
  r[2] = 4.0f * d[1] - 4.0f * d[2] - d[3] + d[4];
  r[3] = -2.0f * d[1] - d[2] + 2.0f * d[3] + d[4];
  r[4] = 2.0f * d[1] - d[2] - 2.0f * d[3] + d[4];
  r[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
}

// r = A^T m for six values m
template <typename T>
inline void times_at(const T* m, T* r) {
  r[0] = m[0] + m[1] + m[2] + m[3] + m[4];
  r[1] = m[1] - m[2] + 2.0f * (m[3] - m[4]);
  r[2] = m[1] + m[2] + 4.0f * (m[3] + m[4]);
  r[3] = m[1] - m[2] + 8.0f * (m[3] - m[4]) + m[5];
}

template <typename T>
inline T read(const float* p) {
  if constexpr (sizeof(T) == sizeof(float))
    return *p;
  else
    return load(p);
}
template <typename T>
inline void write(float* p, T v) {
  if constexpr (sizeof(T) == sizeof(float))
    *p = v;
  else
    store(p, v);
}

// The geometry of one convolution: x is (H, W, C) per image, y (out_h, out_w, K); tile
// (ty, tx) reads input rows from ty * 4 - pad_h and columns from tx * 4 - pad_w.
struct Geometry {
  int64_t C, H, W, K, out_h, out_w, pad_h, pad_w, tiles_h, tiles_w;
};

// B^T d B of one input tile, channels [0, lanes of T) from x (offset to the channel),
// written to v[k * stride] for k = 6 i + j. Pixels outside the image read as zeros.
template <typename T>
inline void input_tile(const float* x, const Geometry& g, int64_t y0, int64_t x0, float* v,
                       int64_t stride) {
  T d[kTile][kTile], t[kTile][kTile];
  for (int i = 0; i < kTile; i++)
    for (int j = 0; j < kTile; j++) {
      const int64_t h = y0 + i, w = x0 + j;
      const bool inside = h >= 0 && h < g.H && w >= 0 && w < g.W;
      d[j][i] = inside ? read<T>(x + (h * g.W + w) * g.C) : T{};  // d transposed
    }
  for (int j = 0; j < kTile; j++) times_bt(d[j], t[j]);  // t[j] = column j of B^T d
  for (int i = 0; i < kTile; i++) {
    T row[kTile], r[kTile];
    for (int j = 0; j < kTile; j++) row[j] = t[j][i];
    times_bt(row, r);
    for (int j = 0; j < kTile; j++) write(v + (i * kTile + j) * stride, r[j]);
  }
}

// The 4x4 outputs of one tile for channels [0, lanes of T): A^T m A from the products
// m[k * stride], plus the bias, those inside the image written to y (offset to the
// channel; `valid` limits a vector's channels at a ragged end).
template <typename T>
inline void output_tile(const float* m, int64_t stride, const float* bias, float* y,
                        const Geometry& g, int64_t y0, int64_t x0) {
  T t[kTile][kOut];
  for (int j = 0; j < kTile; j++) {
    T col[kTile];
    for (int i = 0; i < kTile; i++) col[i] = read<T>(m + (i * kTile + j) * stride);
    times_at(col, t[j]);
  }
  const T b = bias ? read<T>(bias) : T{};
  for (int i = 0; i < kOut && y0 + i < g.out_h; i++) {
    T row[kTile], r[kOut];
    for (int j = 0; j < kTile; j++) row[j] = t[j][i];
    times_at(row, r);
    for (int j = 0; j < kOut && x0 + j < g.out_w; j++)
      write(y + ((y0 + i) * g.out_w + x0 + j) * g.K, r[j] + b);
  }
}

// out (R x 16 NV, row stride ld) = v (R x C, row stride C) @ u (C x 16 NV, packed rows):
// R x NV vector accumulators in registers for the whole sum.
template <int R, int NV>
inline void product_block(const float* v, int64_t C, const float* u, float* out, int64_t ld) {
  Vec acc[R][NV] = {};
  for (int64_t c = 0; c < C; c++) {
    Vec b[NV];
    for (int j = 0; j < NV; j++) b[j] = load(u + c * NV * kLanes + j * kLanes);
    for (int r = 0; r < R; r++) {
      const Vec a = broadcast(v[r * C + c]);
      for (int j = 0; j < NV; j++) acc[r][j] += a * b[j];
    }
  }
  for (int r = 0; r < R; r++)
    for (int j = 0; j < NV; j++) store(out + r * ld + j * kLanes, acc[r][j]);
}

// All rows of one chunk: blocks of kRows, then the remainder.
template <int NV>
void product(const float* v, int64_t rows, int64_t C, const float* u, float* out, int64_t ld) {
  int64_t r = 0;
  for (; r + kRows <= rows; r += kRows)
    product_block<kRows, NV>(v + r * C, C, u, out + r * ld, ld);
  const float* vr = v + r * C;
  float* o = out + r * ld;
  switch (rows - r) {
    case 5: product_block<5, NV>(vr, C, u, o, ld); break;
    case 4: product_block<4, NV>(vr, C, u, o, ld); break;
    case 3: product_block<3, NV>(vr, C, u, o, ld); break;
    case 2: product_block<2, NV>(vr, C, u, o, ld); break;
    case 1: product_block<1, NV>(vr, C, u, o, ld); break;
    default: break;
  }
}

// Calls f(T, c) over C channels: vectors of 16, then single floats.
template <typename F>
void in_lanes(int64_t C, F&& f) {
  int64_t c = 0;
  for (; c + kLanes <= C; c += kLanes) f(Vec{}, c);
  for (; c < C; c++) f(0.0f, c);
}

// One chunk of tiles [t0, t0 + n) of image `img`-major order, start to finish.
void convolve_chunk(const float* x, const float* u, const float* bias, float* y,
                    const Geometry& g, int64_t t0, int64_t n, std::vector<float>& v,
                    std::vector<float>& m) {
  const int64_t per_image = g.tiles_h * g.tiles_w;
  auto origin = [&](int64_t t, int64_t& img, int64_t& ty, int64_t& tx) {
    img = t / per_image;
    ty = t / g.tiles_w % g.tiles_h;
    tx = t % g.tiles_w;
  };
  v.resize(kPositions * n * g.C);
  for (int64_t i = 0; i < n; i++) {
    int64_t img, ty, tx;
    origin(t0 + i, img, ty, tx);
    const float* plane = x + img * g.H * g.W * g.C;
    in_lanes(g.C, [&](auto lane, int64_t c) {
      input_tile<decltype(lane)>(plane + c, g, ty * kOut - g.pad_h, tx * kOut - g.pad_w,
                                 v.data() + i * g.C + c, n * g.C);
    });
  }
  m.resize(kPositions * n * kPanel);
  const int64_t padded = (g.K + kLanes - 1) / kLanes * kLanes;
  for (int64_t k0 = 0; k0 < padded; k0 += kPanel) {
    const int64_t width = std::min<int64_t>(kPanel, padded - k0);  // 32, or 16 at the end
    const float* panel = u + k0 * kPositions * g.C;
    for (int k = 0; k < kPositions; k++) {
      const float* uk = panel + k * g.C * width;
      if (width == kPanel)
        product<2>(v.data() + k * n * g.C, n, g.C, uk, m.data() + k * n * width, width);
      else
        product<1>(v.data() + k * n * g.C, n, g.C, uk, m.data() + k * n * width, width);
    }
    const int64_t valid = std::min(width, g.K - k0);
    for (int64_t i = 0; i < n; i++) {
      int64_t img, ty, tx;
      origin(t0 + i, img, ty, tx);
      float* plane = y + img * g.out_h * g.out_w * g.K + k0;
      in_lanes(valid, [&](auto lane, int64_t c) {
        output_tile<decltype(lane)>(m.data() + i * width + c, n * width,
                                    bias ? bias + k0 + c : nullptr, plane + c, g,
                                    ty * kOut, tx * kOut);
      });
    }
  }
}

}  // namespace

// The convolution of x (N, C, H, W, channels_last, float32) with the kernel packed by
// winograd.py (pack_weights: 36 x C x K in panels of 32 output channels, the last of 16
// where K is not a multiple of 32), plus bias (or an empty tensor): an (N, K, out_h,
// out_w) channels_last tensor, output tile (ty, tx) read from the input tile at row
// ty * 4 - pad_h, column tx * 4 - pad_w (pixels outside x are zeros).
torch::Tensor winograd_conv(torch::Tensor x, torch::Tensor u, torch::Tensor bias, int64_t K,
                            int64_t pad_h, int64_t pad_w, int64_t out_h, int64_t out_w) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat && x.dim() == 4 &&
                  x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "x must be a 4-D channels_last float32 CPU tensor");
  TORCH_CHECK(out_h > 0 && out_w > 0 && K > 0, "the output must not be empty");
  const int64_t N = x.size(0), C = x.size(1);
  const int64_t padded = (K + kLanes - 1) / kLanes * kLanes;
  TORCH_CHECK(u.device().is_cpu() && u.scalar_type() == torch::kFloat && u.is_contiguous() &&
                  u.numel() == kPositions * C * padded,
              "u must be the packed kernel: 36 x ", C, " x ", padded, " floats");
  const bool has_bias = bias.numel() > 0;
  TORCH_CHECK(!has_bias || (bias.scalar_type() == torch::kFloat && bias.is_contiguous() &&
                            bias.numel() == K),
              "bias must hold one float32 per output channel");
  const Geometry g{C, x.size(2), x.size(3), K, out_h, out_w, pad_h, pad_w,
                   (out_h + kOut - 1) / kOut, (out_w + kOut - 1) / kOut};
  auto y = torch::empty({N, K, out_h, out_w},
                        x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const int64_t T = N * g.tiles_h * g.tiles_w;
  // Chunks of up to 24 tiles (a chunk's transformed tiles, 36 x 24 x C floats, stay in
  // the core's L2 cache), as many for each thread, of equal size.
  const int64_t threads = at::get_num_threads();
  const int64_t rounds = (T + threads * 24 - 1) / (threads * 24);
  const int64_t chunk = (T + threads * rounds - 1) / (threads * rounds);
  const int64_t chunks = (T + chunk - 1) / chunk;
  const float *xp = x.data_ptr<float>(), *up = u.data_ptr<float>();
  const float* bp = has_bias ? bias.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> v, m;
    for (int64_t i = begin; i < end; i++) {
      const int64_t t0 = i * chunk;
      convolve_chunk(xp, up, bp, yp, g, t0, std::min(chunk, T - t0), v, m);
    }
  });
  return y;
}
