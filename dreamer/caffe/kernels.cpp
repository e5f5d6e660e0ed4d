// CPU kernels for the two layers that eager PyTorch runs as many passes over memory:
// max pooling (its backward runs on one core for one image) and the cross-channel LRN
// (eight elementwise passes and two GEMMs). Built by dreamer/caffe/native.py; each result
// equals the PyTorch path in dreamer/caffe/layers.py (pooling bit for bit, the LRN to
// float rounding). Tensors are float32, 4-D ones channels_last: every pixel's channels
// lie side by side, so each loop below reads a pixel's channels as one contiguous row.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace {

void check_float(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat, name,
              " must be a float32 CPU tensor");
}

void check_image(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast), name,
              " must be 4-D channels_last");
}

void check_rows(const torch::Tensor& t, const char* name) {
  check_float(t, name);
  TORCH_CHECK(t.dim() == 2 && t.is_contiguous(), name, " must be contiguous (pixels, C) rows");
}

// out[i] = sum of in[i - h .. i + h] (zero beyond the ends), for one row of C channels.
// `padded` holds the row with h zeros on each side; two plain loops so they vectorise.
void window_sum(const std::vector<float>& padded, int64_t C, int64_t n, float* out) {
  std::fill(out, out + C, 0.0f);
  for (int64_t j = 0; j < n; j++) {
    const float* src = padded.data() + j;
    for (int64_t i = 0; i < C; i++) out[i] += src[i];
  }
}

// Calls f(B, c) over a pixel's C channels in blocks [c, c + B): of 64, then of 16, then
// one at a time. B is a compile-time constant, so each block's loop unrolls. 64 on every
// instruction set: four AVX-512 vectors of values and four of positions or sums fit its
// registers; on AVX2 and SSE they do not, but blocks of four of their vectors (32, 16
// channels) were slower still (the window's loops then run more often): pool2's forward
// 0.65 -> 1.5 ms with AVX2, 1.5 -> 17 ms with SSE2 (one core of an AMD Zen 4).
template <typename F>
void in_channel_blocks(int64_t C, F&& f) {
  int64_t c = 0;
  for (; c + 64 <= C; c += 64) f(std::integral_constant<int, 64>{}, c);
  for (; c + 16 <= C; c += 16) f(std::integral_constant<int, 16>{}, c);
  for (; c < C; c++) f(std::integral_constant<int, 1>{}, c);
}

// f(Relu) with Relu a compile-time bool: the ReLU test leaves the inner loops.
template <typename F>
void with_relu(bool relu, F&& f) {
  if (relu)
    f(std::true_type{});
  else
    f(std::false_type{});
}

}  // namespace

// One output pixel of max pooling, channels [0, B) of it (pointers offset to the block):
// the running maximum and its position stay in registers for the whole window. The first
// maximum in row-major order wins and NaN propagates, as in PyTorch's CPU kernel.
template <int B, bool Relu>
inline void pool_pixel(const float* plane, int64_t C, int64_t W, int64_t h0, int64_t h1,
                       int64_t w0, int64_t w1, float* yr, int32_t* wr) {
  float best[B];
  int32_t at[B];
  const float* first = plane + (h0 * W + w0) * C;
  for (int c = 0; c < B; c++) {
    best[c] = first[c];
    at[c] = int32_t(h0 * W + w0);
  }
  for (int64_t h = h0; h < h1; h++) {
    for (int64_t w = (h == h0 ? w0 + 1 : w0); w < w1; w++) {
      const float* xr = plane + (h * W + w) * C;
      const int32_t pos = int32_t(h * W + w);
      for (int c = 0; c < B; c++) {
        const bool take = xr[c] > best[c] || xr[c] != xr[c];
        best[c] = take ? xr[c] : best[c];
        at[c] = take ? pos : at[c];
      }
    }
  }
  for (int c = 0; c < B; c++) {
    yr[c] = Relu && best[c] < 0.0f ? 0.0f : best[c];  // as PyTorch's relu: keeps NaN, -0.0
    wr[c] = at[c];
  }
}

// Max pooling in Caffe's (and PyTorch's) ceil mode, windows clipped to the image. Returns
// the pooled blob (ReLU applied when `relu`) and each maximum's position h * W + w, int32.
std::vector<torch::Tensor> max_pool_forward(torch::Tensor x, int64_t out_h, int64_t out_w,
                                            int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                            int64_t ph, int64_t pw, bool relu) {
  check_float(x, "x");
  check_image(x, "x");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(H * W < (int64_t(1) << 31), "image too large for int32 positions");
  // as PyTorch's pool requires: every window holds at least one pixel of the image
  TORCH_CHECK(kh > 0 && kw > 0 && sh > 0 && sw > 0 && 2 * ph <= kh && 2 * pw <= kw,
              "pool windows must be non-empty, with pad at most half the kernel");
  TORCH_CHECK(out_h > 0 && out_w > 0 && (out_h - 1) * sh - ph < H && (out_w - 1) * sw - pw < W,
              "pooled size larger than the image allows");
  const auto layout = x.options().memory_format(at::MemoryFormat::ChannelsLast);
  auto y = torch::empty({N, C, out_h, out_w}, layout);
  auto where = torch::empty({N, C, out_h, out_w}, layout.dtype(torch::kInt));
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  int32_t* wp = where.data_ptr<int32_t>();
  at::parallel_for(0, N * out_h * out_w, 16, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; o++) {
      const int64_t img = o / (out_h * out_w), oh = o / out_w % out_h, ow = o % out_w;
      const int64_t h0 = std::max<int64_t>(oh * sh - ph, 0), h1 = std::min(oh * sh - ph + kh, H);
      const int64_t w0 = std::max<int64_t>(ow * sw - pw, 0), w1 = std::min(ow * sw - pw + kw, W);
      const float* plane = xp + img * H * W * C;
      with_relu(relu, [&](auto Relu) {
        in_channel_blocks(C, [&](auto B, int64_t c) {
          pool_pixel<B, Relu>(plane + c, C, W, h0, h1, w0, w1, yp + o * C + c, wp + o * C + c);
        });
      });
    }
  });
  return {y, where};
}

// The geometry of max_pool_backward's gather: input pixel (h, w) of image `img` receives
// from outputs oh in [oh0, oh1], ow in [ow0, ow1].
struct Window {
  int64_t img, oh0, oh1, ow0, ow1;
  int32_t pos;
};

// One input pixel's gradient, channels [0, B) (pointers offset to the block): the sum,
// kept in registers, over the outputs whose maximum it is, in output order (the order
// PyTorch's scatter adds in, so the sums are the same to the bit). With Relu, gradients
// where the pooled blob y <= 0 are dropped (NaN keeps it, as in threshold_backward).
template <int B, bool Relu>
inline void gather_pixel(const float* gp, const int32_t* wp, const float* yp, int64_t C,
                         int64_t Ho, int64_t Wo, const Window& win, float* dr) {
  float acc[B] = {};
  for (int64_t oh = win.oh0; oh <= win.oh1; oh++) {
    for (int64_t ow = win.ow0; ow <= win.ow1; ow++) {
      const int64_t o = ((win.img * Ho + oh) * Wo + ow) * C;
      for (int c = 0; c < B; c++) {
        // (& not &&: both loads unconditional, or the loop does not vectorise)
        bool mine = wp[o + c] == win.pos;
        if (Relu) mine = mine & !(yp[o + c] <= 0.0f);
        acc[c] += mine ? gp[o + c] : 0.0f;
      }
    }
  }
  for (int c = 0; c < B; c++) dr[c] = acc[c];
}

// The gradient of max_pool_forward: each output's gradient goes to its maximum's position,
// summed where windows overlap. With the pooled blob `y` of a fused ReLU (else an empty
// tensor), gradients where y <= 0 are dropped first. Each input pixel gathers from the
// few outputs whose windows hold it: every dx row is written once, by one thread, with no
// zeroing pass before.
torch::Tensor max_pool_backward(torch::Tensor g, torch::Tensor where, torch::Tensor y,
                                int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t sh,
                                int64_t sw, int64_t ph, int64_t pw) {
  check_float(g, "g");
  check_image(g, "g");
  check_image(where, "where");
  TORCH_CHECK(where.scalar_type() == torch::kInt && where.sizes() == g.sizes(),
              "where must be int32 and shaped like g");
  const bool relu = y.numel() > 0;
  if (relu) {
    check_float(y, "y");
    check_image(y, "y");
    TORCH_CHECK(y.sizes() == g.sizes(), "y must be shaped like g");
  }
  TORCH_CHECK(kh > 0 && kw > 0 && sh > 0 && sw > 0 && ph >= 0 && pw >= 0 && H > 0 && W > 0,
              "pool kernel, stride, pad and image size must be positive");
  const int64_t N = g.size(0), C = g.size(1), Ho = g.size(2), Wo = g.size(3);
  auto dx = torch::empty({N, C, H, W}, g.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float* gp = g.data_ptr<float>();
  const int32_t* wp = where.data_ptr<int32_t>();
  const float* yp = relu ? y.data_ptr<float>() : nullptr;
  float* dp = dx.data_ptr<float>();
  // outputs o with o * stride - pad <= i < o * stride - pad + kernel, within [0, out)
  auto first_out = [](int64_t i, int64_t k, int64_t s, int64_t p) {
    const int64_t lo = i + p - k + 1;
    return lo <= 0 ? int64_t(0) : (lo + s - 1) / s;
  };
  at::parallel_for(0, N * H * W, 8, [&](int64_t begin, int64_t end) {
    for (int64_t px = begin; px < end; px++) {
      const int64_t h = px / W % H, w = px % W;
      const Window win{px / (H * W), first_out(h, kh, sh, ph), std::min(Ho - 1, (h + ph) / sh),
                       first_out(w, kw, sw, pw), std::min(Wo - 1, (w + pw) / sw),
                       int32_t(h * W + w)};
      with_relu(relu, [&](auto Relu) {
        in_channel_blocks(C, [&](auto B, int64_t c) {
          gather_pixel<B, Relu>(gp + c, wp + c, Relu ? yp + c : nullptr, C, Ho, Wo, win,
                                dp + px * C + c);
        });
      });
    }
  });
  return dx;
}

// Caffe's ACROSS_CHANNELS LRN on (pixels, C) rows: s = k + alpha/n * (sum of x^2 over
// each channel's window of n), y = x * s^-beta. Returns y, and for the backward
// p = s^-beta and q = y / s: with them the backward needs no root and no division.
std::vector<torch::Tensor> lrn_forward(torch::Tensor v, int64_t n, double alpha, double k,
                                       double beta) {
  check_rows(v, "v");
  TORCH_CHECK(n > 0 && n % 2 == 1, "LRN local_size must be odd");
  auto y = torch::empty_like(v), p = torch::empty_like(v), q = torch::empty_like(v);
  const int64_t P = v.size(0), C = v.size(1), h = (n - 1) / 2;
  const float scale = float(alpha) / float(n), kf = float(k), bf = float(beta);
  const float* xp = v.data_ptr<float>();
  float *yp = y.data_ptr<float>(), *pp = p.data_ptr<float>(), *qp = q.data_ptr<float>();
  at::parallel_for(0, P, 64, [&](int64_t begin, int64_t end) {
    std::vector<float> squares(C + 2 * h, 0.0f), sums(C);
    for (int64_t r = begin; r < end; r++) {
      const float* xr = xp + r * C;
      float *yr = yp + r * C, *pr = pp + r * C, *qr = qp + r * C;
      for (int64_t i = 0; i < C; i++) squares[i + h] = xr[i] * xr[i];
      window_sum(squares, C, n, sums.data());
      for (int64_t i = 0; i < C; i++) sums[i] = kf + scale * sums[i];
      if (bf == 0.75f) {  // (AlexNet's, GoogLeNet's) s^-0.75 = r^1.5 and 1/s = r^2, r = 1/sqrt(s)
        for (int64_t i = 0; i < C; i++) {
          const float r = 1.0f / std::sqrt(sums[i]);
          pr[i] = r * std::sqrt(r);
          yr[i] = xr[i] * pr[i];
          qr[i] = yr[i] * r * r;
        }
      } else {
        for (int64_t i = 0; i < C; i++) {
          pr[i] = std::pow(sums[i], -bf);
          yr[i] = xr[i] * pr[i];
          qr[i] = yr[i] / sums[i];
        }
      }
    }
  });
  return {y, p, q};
}

// Caffe's closed-form LRN backward:
// dx_i = g_i p_i - 2 beta alpha/n x_i * (sum over i's window of g_j q_j).
torch::Tensor lrn_backward(torch::Tensor g, torch::Tensor v, torch::Tensor p, torch::Tensor q,
                           int64_t n, double alpha, double beta) {
  for (const auto& [t, name] : {std::pair{g, "g"}, {v, "v"}, {p, "p"}, {q, "q"}}) {
    check_rows(t, name);
    TORCH_CHECK(t.sizes() == v.sizes(), name, " must be shaped like v");
  }
  TORCH_CHECK(n > 0 && n % 2 == 1, "LRN local_size must be odd");
  auto dx = torch::empty_like(v);
  const int64_t P = v.size(0), C = v.size(1), h = (n - 1) / 2;
  const float factor = -2.0f * float(beta) * float(alpha) / float(n);
  const float *gp = g.data_ptr<float>(), *xp = v.data_ptr<float>();
  const float *pp = p.data_ptr<float>(), *qp = q.data_ptr<float>();
  float* dp = dx.data_ptr<float>();
  at::parallel_for(0, P, 64, [&](int64_t begin, int64_t end) {
    std::vector<float> weighted(C + 2 * h, 0.0f), sums(C);
    for (int64_t r = begin; r < end; r++) {
      const float *gr = gp + r * C, *xr = xp + r * C, *pr = pp + r * C, *qr = qp + r * C;
      float* dr = dp + r * C;
      for (int64_t i = 0; i < C; i++) weighted[i + h] = gr[i] * qr[i];
      window_sum(weighted, C, n, sums.data());
      for (int64_t i = 0; i < C; i++) dr[i] = gr[i] * pr[i] + factor * xr[i] * sums[i];
    }
  });
  return dx;
}

// in winograd.cpp
torch::Tensor winograd_conv(torch::Tensor x, torch::Tensor u, torch::Tensor bias, int64_t K,
                            int64_t m, int64_t pad_h, int64_t pad_w, int64_t out_h,
                            int64_t out_w);
std::tuple<int64_t, int64_t> winograd_layout();
std::string variant();

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // The GIL is released: the frame reader and writer threads run meanwhile.
  const auto nogil = pybind11::call_guard<pybind11::gil_scoped_release>();
  m.def("max_pool_forward", &max_pool_forward, nogil);
  m.def("max_pool_backward", &max_pool_backward, nogil);
  m.def("lrn_forward", &lrn_forward, nogil);
  m.def("lrn_backward", &lrn_backward, nogil);
  m.def("winograd_conv", &winograd_conv, nogil);
  m.def("winograd_layout", &winograd_layout);
  m.def("variant", &variant);
}
