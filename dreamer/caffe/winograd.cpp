// Stride-1 convolutions with 3x3, 4x4 and 5x5 kernels by Winograd's minimal filtering
// F(m x m, r x r) on 6x6 input tiles, m = 7 - r outputs a side (4, 3, 2): see
// dreamer/caffe/winograd.py for the algorithm and the kernel transform. Each input tile d
// becomes B^T d B; for each of the 36 tile positions k the transformed tiles of a chunk,
// (tiles x C_in), are multiplied by the transformed kernel U[k], (C_in x C_out); each
// tile's 36 products m become its m x m outputs A^T m A. The interpolation points are 0,
// 1, -1, 2, -2 and infinity for every r, which give B^T and A^T below.
//
// All three steps run per chunk of tiles on one thread, the chunk's data staying in that
// core's cache: no pass over memory between them, no packing of the kernel at each call
// (it is packed once, by winograd.py) and one parallel region per convolution.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

// The vector width and the product's panel width follow the instruction set the module
// is compiled for. The product keeps 12 vector accumulators (6 rows x 2 vectors) plus two
// loads and a broadcast in registers: that fits AVX-512's 32 registers, and AVX2's 16 only
// with one register per vector (16-float vectors there are register pairs: 24
// accumulators, which spilled: 8x slower on the same core), and the 16 of SSE or 32 of
// NEON with 4 floats a vector.
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#define DREAMER_ISA "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kLanes = 8;
#define DREAMER_ISA "avx2+fma"
#else
constexpr int kLanes = 4;
#define DREAMER_ISA "portable"
#endif
constexpr int kTile = 6, kPositions = kTile * kTile;
constexpr int kPanel = 2 * kLanes;  // output channels per packed kernel panel: two vectors

typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));

inline Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }
// x - 0 is x for every x (0 + x is not, for x = -0), so this is a plain broadcast
inline Vec broadcast(float x) { return x - Vec{}; }

// r = B^T d for six vectors d
inline void times_bt(const Vec* d, Vec* r) {
  r[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
  r[1] = -4.0f * d[1] - 4.0f * d[2] + d[3] + d[4];
  r[2] = 4.0f * d[1] - 4.0f * d[2] - d[3] + d[4];
  r[3] = -2.0f * d[1] - d[2] + 2.0f * d[3] + d[4];
  r[4] = 2.0f * d[1] - d[2] - 2.0f * d[3] + d[4];
  r[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
}

// r = A^T m for six vectors m, the first M rows of A^T: row i holds p_j^i at the finite
// points and 1 at infinity in the last row only
template <int M>
inline void times_at(const Vec* m, Vec* r) {
  const Vec sum = m[3] + m[4], diff = m[3] - m[4];
  r[0] = m[0] + m[1] + m[2] + sum;
  r[1] = m[1] - m[2] + 2.0f * diff;
  if constexpr (M > 2) r[2] = m[1] + m[2] + 4.0f * sum;
  if constexpr (M > 3) r[3] = m[1] - m[2] + 8.0f * diff;
  r[M - 1] += m[5];
}

// A vector of channels [0, n) from p, the rest zeros (n < kLanes at a ragged end), and
// its store: masked moves where the CPU has them (a memcpy of a variable size is a call,
// and a lane-by-lane loop goes through memory).
#if defined(__AVX512F__)
inline __mmask16 lanes_mask(int64_t n) { return __mmask16((1u << n) - 1); }
inline Vec load_part(const float* p, int64_t n) {
  return Vec(_mm512_maskz_loadu_ps(lanes_mask(n), p));
}
inline void store_part(float* p, Vec v, int64_t n) {
  _mm512_mask_storeu_ps(p, lanes_mask(n), __m512(v));
}
#elif defined(__AVX2__) && defined(__FMA__)
// lane i is on (its sign bit set) where i < n
inline __m256i lanes_mask(int64_t n) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), lane);
}
inline Vec load_part(const float* p, int64_t n) {
  return Vec(_mm256_maskload_ps(p, lanes_mask(n)));
}
inline void store_part(float* p, Vec v, int64_t n) {
  _mm256_maskstore_ps(p, lanes_mask(n), __m256(v));
}
#else
inline Vec load_part(const float* p, int64_t n) {
  Vec v = {};
  for (int64_t i = 0; i < n; i++) v[i] = p[i];
  return v;
}
inline void store_part(float* p, Vec v, int64_t n) {
  for (int64_t i = 0; i < n; i++) p[i] = v[i];
}
#endif

// The geometry of one convolution: x is (H, W, C) per image, y (out_h, out_w, K); tile
// (ty, tx) makes outputs from row ty * m, column tx * m, reading input rows from
// ty * m - pad_h and columns from tx * m - pad_w.
struct Geometry {
  int64_t C, H, W, K, out_h, out_w, pad_h, pad_w, m, tiles_h, tiles_w;
};

// B^T d B of one input tile, channels [0, n) from x (offset to the channel, n <= kLanes),
// written to v[k * stride] for k = 6 i + j. Pixels outside the image read as zeros.
inline void input_tile(const float* x, int64_t n, const Geometry& g, int64_t y0, int64_t x0,
                       float* v, int64_t stride) {
  Vec d[kTile][kTile], t[kTile][kTile];
  for (int i = 0; i < kTile; i++)
    for (int j = 0; j < kTile; j++) {
      const int64_t h = y0 + i, w = x0 + j;
      const float* p = x + (h * g.W + w) * g.C;
      const bool inside = h >= 0 && h < g.H && w >= 0 && w < g.W;
      d[j][i] = !inside ? Vec{} : n == kLanes ? load(p) : load_part(p, n);  // d transposed
    }
  for (int j = 0; j < kTile; j++) times_bt(d[j], t[j]);  // t[j] = column j of B^T d
  for (int i = 0; i < kTile; i++) {
    Vec row[kTile], r[kTile];
    for (int j = 0; j < kTile; j++) row[j] = t[j][i];
    times_bt(row, r);
    for (int j = 0; j < kTile; j++) {
      float* out = v + (i * kTile + j) * stride;
      if (n == kLanes)
        store(out, r[j]);
      else
        store_part(out, r[j], n);
    }
  }
}

// The M x M outputs of one tile for channels [0, n) (n <= kLanes): A^T m A from the products
// m[k * stride], plus the bias, those inside the image written to y (offset to the
// channel).
template <int M>
inline void output_tile(const float* m, int64_t stride, int64_t n, const float* bias,
                        float* y, const Geometry& g, int64_t y0, int64_t x0) {
  Vec t[kTile][M];
  for (int j = 0; j < kTile; j++) {
    Vec col[kTile];
    for (int i = 0; i < kTile; i++) col[i] = load(m + (i * kTile + j) * stride);
    times_at<M>(col, t[j]);
  }
  const Vec b = !bias ? Vec{} : n == kLanes ? load(bias) : load_part(bias, n);
  for (int i = 0; i < M && y0 + i < g.out_h; i++) {
    Vec row[kTile], r[M];
    for (int j = 0; j < kTile; j++) row[j] = t[j][i];
    times_at<M>(row, r);
    for (int j = 0; j < M && x0 + j < g.out_w; j++) {
      float* out = y + ((y0 + i) * g.out_w + x0 + j) * g.K;
      if (n == kLanes)
        store(out, r[j] + b);
      else
        store_part(out, r[j] + b, n);
    }
  }
}

// out (R x kLanes NV, row stride ld) = v (R x C, row stride C) @ u (C x kLanes NV, packed
// rows): R x NV vector accumulators in registers for the whole sum.
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

// All rows of one chunk, a multiple of kRowBlock: blocks of 12 / NV rows (12
// accumulators, enough to hide the multiply-adds' latency).
constexpr int kRowBlock = 12;
template <int NV>
void product(const float* v, int64_t rows, int64_t C, const float* u, float* out, int64_t ld) {
  constexpr int R = kRowBlock / NV;
  for (int64_t r = 0; r < rows; r += R) product_block<R, NV>(v + r * C, C, u, out + r * ld, ld);
}

// Calls f(c, n) over C channels in vectors: [c, c + n), n = kLanes but at a ragged end.
template <typename F>
void in_lanes(int64_t C, F&& f) {
  for (int64_t c = 0; c < C; c += kLanes) f(c, std::min<int64_t>(kLanes, C - c));
}

// One chunk of tiles [t0, t0 + n) (numbered image by image, row by row), start to finish;
// v and m are the thread's buffers for the transformed tiles and the products. Their rows
// are rounded up to whole blocks of the product: the extra rows hold what an earlier chunk
// left (or zeros), and their products are never read.
void convolve_chunk(const float* x, const float* u, const float* bias, float* y,
                    const Geometry& g, int64_t t0, int64_t n, std::vector<float>& v,
                    std::vector<float>& m) {
  const int64_t per_image = g.tiles_h * g.tiles_w;
  auto origin = [&](int64_t t, int64_t& img, int64_t& ty, int64_t& tx) {
    img = t / per_image;
    ty = t / g.tiles_w % g.tiles_h;
    tx = t % g.tiles_w;
  };
  const int64_t rows = (n + kRowBlock - 1) / kRowBlock * kRowBlock;
  v.resize(kPositions * rows * g.C);
  for (int64_t i = 0; i < n; i++) {
    int64_t img, ty, tx;
    origin(t0 + i, img, ty, tx);
    const float* plane = x + img * g.H * g.W * g.C;
    in_lanes(g.C, [&](int64_t c, int64_t lanes) {
      input_tile(plane + c, lanes, g, ty * g.m - g.pad_h, tx * g.m - g.pad_w,
                 v.data() + i * g.C + c, rows * g.C);
    });
  }
  m.resize(kPositions * rows * kPanel);
  const int64_t padded = (g.K + kLanes - 1) / kLanes * kLanes;
  for (int64_t k0 = 0; k0 < padded; k0 += kPanel) {
    // two vectors, or one at the end
    const int64_t width = std::min<int64_t>(kPanel, padded - k0);
    const float* panel = u + k0 * kPositions * g.C;
    for (int k = 0; k < kPositions; k++) {
      const float* uk = panel + k * g.C * width;
      const float* vk = v.data() + k * rows * g.C;
      float* mk = m.data() + k * rows * width;
      if (width == kPanel)
        product<2>(vk, rows, g.C, uk, mk, width);
      else
        product<1>(vk, rows, g.C, uk, mk, width);
    }
    const int64_t valid = std::min(width, g.K - k0);
    for (int64_t i = 0; i < n; i++) {
      int64_t img, ty, tx;
      origin(t0 + i, img, ty, tx);
      float* plane = y + img * g.out_h * g.out_w * g.K + k0;
      in_lanes(valid, [&](int64_t c, int64_t lanes) {
        const float* products = m.data() + i * width + c;
        const float* b = bias ? bias + k0 + c : nullptr;
        const int64_t y0 = ty * g.m, x0 = tx * g.m;
        const int64_t stride = rows * width;
        switch (g.m) {
          case 4: output_tile<4>(products, stride, lanes, b, plane + c, g, y0, x0); break;
          case 3: output_tile<3>(products, stride, lanes, b, plane + c, g, y0, x0); break;
          default: output_tile<2>(products, stride, lanes, b, plane + c, g, y0, x0); break;
        }
      });
    }
  }
}

}  // namespace

// The convolution of x (N, C, H, W, channels_last, float32) with the kernel packed by
// winograd.py (pack_weights: 36 x C x K in panels of kPanel output channels, the last of
// kLanes where K is not a multiple of kPanel; winograd_layout() gives both) for tiles of
// m x m outputs, plus bias (or an empty tensor): an (N, K, out_h, out_w) channels_last
// tensor, output tile (ty, tx) read from the input tile at row ty * m - pad_h, column
// tx * m - pad_w (zeros outside x).
torch::Tensor winograd_conv(torch::Tensor x, torch::Tensor u, torch::Tensor bias, int64_t K,
                            int64_t m, int64_t pad_h, int64_t pad_w, int64_t out_h,
                            int64_t out_w) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat && x.dim() == 4 &&
                  x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "x must be a 4-D channels_last float32 CPU tensor");
  TORCH_CHECK(out_h > 0 && out_w > 0 && K > 0, "the output must not be empty");
  TORCH_CHECK(m >= 2 && m <= 4, "tiles make 2x2, 3x3 or 4x4 outputs (kernels of 5, 4, 3)");
  TORCH_CHECK(pad_h >= 0 && pad_w >= 0, "padding must not be negative");
  const int64_t N = x.size(0), C = x.size(1);
  const int64_t padded = (K + kLanes - 1) / kLanes * kLanes;
  TORCH_CHECK(u.device().is_cpu() && u.scalar_type() == torch::kFloat && u.is_contiguous() &&
                  u.numel() == kPositions * C * padded,
              "u must be the packed kernel: 36 x ", C, " x ", padded, " floats");
  const bool has_bias = bias.numel() > 0;
  TORCH_CHECK(!has_bias || (bias.scalar_type() == torch::kFloat && bias.is_contiguous() &&
                            bias.numel() == K),
              "bias must hold one float32 per output channel");
  const Geometry g{C, x.size(2), x.size(3), K, out_h, out_w, pad_h, pad_w, m,
                   (out_h + m - 1) / m, (out_w + m - 1) / m};
  auto y = torch::empty({N, K, out_h, out_w},
                        x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const int64_t T = N * g.tiles_h * g.tiles_w;
  // Chunks of about 24 tiles (a chunk's transformed tiles, 36 x 24 x C floats, stay in
  // the core's L2 cache), as many for each thread, of equal size in whole blocks of 6
  // rows (the product's for whole panels).
  const int64_t threads = at::get_num_threads();
  const int64_t rounds = (T + threads * 24 - 1) / (threads * 24);
  const int64_t chunk = ((T + threads * rounds - 1) / (threads * rounds) + 5) / 6 * 6;
  const int64_t chunks = (T + chunk - 1) / chunk;
  const float *xp = x.data_ptr<float>(), *up = u.data_ptr<float>();
  const float* bp = has_bias ? bias.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> tiles, products;
    for (int64_t i = begin; i < end; i++) {
      const int64_t t0 = i * chunk;
      convolve_chunk(xp, up, bp, yp, g, t0, std::min(chunk, T - t0), tiles, products);
    }
  });
  return y;
}

// What pack_weights must make for this build: (floats per vector, output channels per panel).
std::tuple<int64_t, int64_t> winograd_layout() { return {kLanes, kPanel}; }

// The instruction set these kernels were compiled for, in words, for logs and bug reports.
std::string variant() {
  return DREAMER_ISA " (" + std::to_string(kLanes) + " lanes, panels of " +
         std::to_string(kPanel) + ")";
}
