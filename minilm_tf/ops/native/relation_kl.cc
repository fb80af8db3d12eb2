// MiniLMRelationKL: the MiniLM relation KL and its gradients in one CPU pass.
//
// For every (example b, relation head r), with the example's real positions
// gathered first (padding removed, so no mask is needed inside), n of them:
//   teacher logits  Lt = ta_r tb_r^T / sqrt(dt)      [n, n]
//   student logits  Ls = sa_r sb_r^T / sqrt(ds)      [n, n]
//   p = softmax(Lt), q = softmax(Ls) by rows; KL_i = sum_j p_ij log(p_ij / q_ij)
//   loss[b]  = sum_r sum_i w KL_i,  w = 1 / (n R)
//   G        = w / sqrt(ds) (q - p)                  (d loss / d (sa_r sb_r^T))
//   grad_a_r = G sb_r,  grad_b_r = G^T sa_r;  symmetric (a = b): (G + G^T) sa_r
// Rows are done eight at a time, so the [n, n] logits never leave the cache and
// only G (n x n floats) is kept per head. This is the math of
// `minilm_tf.relations._relation_loss_and_gradients` (the XLA version used on
// accelerators and inside XLA-compiled steps); tests compare the two.
//
// Vectors are GCC vector extensions: AVX-512, AVX2 or SSE, whatever
// -march=native offers (the library is built on the machine that runs it).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace minilm_tf {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

typedef float V16 __attribute__((vector_size(64)));
typedef float V8 __attribute__((vector_size(32)));
typedef float V4 __attribute__((vector_size(16)));
typedef int32_t I16 __attribute__((vector_size(64)));
typedef int32_t I8 __attribute__((vector_size(32)));

template <typename V>
inline V Load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V>
inline void Store(float* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

// exp for 16 lanes (Cephes' single-precision polynomial, ~1 ulp) of x <= 0;
// 0 below -87.
inline V16 Exp(V16 x) {
  // n = round(x / ln 2) by the 1.5 * 2^23 trick; r = x - n ln 2 in two parts.
  const V16 magic = V16{} + 12582912.0f;
  const V16 n = (x * 1.44269504088896341f + magic) - magic;
  V16 r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  V16 y = V16{} + 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  const I16 bits = (__builtin_convertvector(n, I16) + 127) << 23;
  V16 scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < -87.0f ? V16{} : y * scale;
}

// Reductions of the 16 lanes as a tree of halves (a lane-by-lane loop is a
// chain of 15 dependent operations, which dominated the softmax).
template <class Op>
inline float Reduce(V16 v, Op op) {
  V8 lo8, hi8;
  std::memcpy(&lo8, &v, sizeof(V8));
  std::memcpy(&hi8, reinterpret_cast<const char*>(&v) + sizeof(V8), sizeof(V8));
  const V8 v8 = op(lo8, hi8);
  V4 lo4, hi4;
  std::memcpy(&lo4, &v8, sizeof(V4));
  std::memcpy(&hi4, reinterpret_cast<const char*>(&v8) + sizeof(V4), sizeof(V4));
  const V4 v4 = op(lo4, hi4);
  return op(op(v4[0], v4[1]), op(v4[2], v4[3]));
}

inline float HorizontalMax(V16 v) {
  return Reduce(v, [](auto a, auto b) { return a > b ? a : b; });
}

inline float HorizontalSum(V16 v) {
  return Reduce(v, [](auto a, auto b) { return a + b; });
}

// Scalar reads of the left operand of a product, A(r, k).
struct Rows {  // A[r * stride + k]
  const float* p;
  int stride;
  float operator()(int r, int k) const { return p[r * stride + k]; }
};
struct Columns {  // A^T: A[k * stride + r]
  const float* p;
  int stride;
  float operator()(int r, int k) const { return p[k * stride + r]; }
};
struct PlusTranspose {  // A + A^T
  const float* p;
  int stride;
  float operator()(int r, int k) const { return p[r * stride + k] + p[k * stride + r]; }
};

// C[r, 0:NV*lanes] = sum_k A(r0 + r, k) B[k, 0:NV*lanes] for MR rows: MR * NV
// accumulators held in registers, one broadcast per (row, k).
template <typename V, int NV, int MR, class A>
inline void Block(const A& a, int r0, int K, const float* B, int ldb, float* C, int ldc) {
  constexpr int kLanes = sizeof(V) / sizeof(float);
  V acc[MR][NV] = {};
  for (int k = 0; k < K; ++k) {
    V b[NV];
    for (int v = 0; v < NV; ++v) b[v] = Load<V>(B + k * ldb + v * kLanes);
    for (int r = 0; r < MR; ++r) {
      const float x = a(r0 + r, k);
      for (int v = 0; v < NV; ++v) acc[r][v] += x * b[v];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) Store(C + r * ldc + v * kLanes, acc[r][v]);
}

template <typename V, int NV, class A>
inline void BlockRows(const A& a, int M, int K, const float* B, int ldb, float* C, int ldc) {
  constexpr int kRows = 16 / NV;  // 16 accumulators
  int r = 0;
  for (; r + kRows <= M; r += kRows) Block<V, NV, kRows>(a, r, K, B, ldb, C + r * ldc, ldc);
  for (; r < M; ++r) Block<V, NV, 1>(a, r, K, B, ldb, C + r * ldc, ldc);
}

// C[M, N] = A(M, K) B[K, N] (B, C row-major with leading dimensions ldb, ldc).
template <class A>
void MatMul(const A& a, int M, int N, int K, const float* B, int ldb, float* C, int ldc) {
  int c = 0;
  for (; c + 32 <= N; c += 32) BlockRows<V16, 2>(a, M, K, B + c, ldb, C + c, ldc);
  for (; c + 16 <= N; c += 16) BlockRows<V16, 1>(a, M, K, B + c, ldb, C + c, ldc);
  for (; c + 8 <= N; c += 8) BlockRows<V8, 1>(a, M, K, B + c, ldb, C + c, ldc);
  for (; c + 4 <= N; c += 4) BlockRows<V4, 1>(a, M, K, B + c, ldb, C + c, ldc);
  for (; c < N; ++c) {
    for (int r = 0; r < M; ++r) {
      float s = 0.0f;
      for (int k = 0; k < K; ++k) s += a(r, k) * B[k * ldb + c];
      C[r * ldc + c] = s;
    }
  }
}

// Transposes an L x L tile held as L row vectors, in log2(L) rounds of
// two-vector shuffles (round s swaps the off-diagonal s x s blocks).
template <typename V, typename I, int L>
inline void TransposeTile(V* r) {
  for (int s = L / 2; s >= 1; s /= 2) {
    I lo, hi;
    for (int j = 0; j < L; ++j) {
      lo[j] = (j & s) ? L + j - s : j;
      hi[j] = (j & s) ? L + j : j + s;
    }
    for (int i = 0; i < L; ++i) {
      if (i & s) continue;
      const V a = r[i], b = r[i + s];
      r[i] = __builtin_shuffle(a, b, lo);
      r[i + s] = __builtin_shuffle(a, b, hi);
    }
  }
}

// dst[k, i] = scale * src[i, k] for src [rows, d] (rows a multiple of 16) and
// dst [d, rows].
inline void TransposeScaled(const float* src, int rows, int d, float scale, float* dst) {
  for (int i0 = 0; i0 < rows; i0 += 16) {
    int k0 = 0;
    for (; k0 + 16 <= d; k0 += 16) {
      V16 t[16];
      for (int r = 0; r < 16; ++r) t[r] = Load<V16>(src + (i0 + r) * d + k0);
      TransposeTile<V16, I16, 16>(t);
      for (int c = 0; c < 16; ++c) Store(dst + (k0 + c) * rows + i0, t[c] * scale);
    }
    for (; k0 + 8 <= d; k0 += 8) {
      for (int h = 0; h < 16; h += 8) {
        V8 t[8];
        for (int r = 0; r < 8; ++r) t[r] = Load<V8>(src + (i0 + h + r) * d + k0);
        TransposeTile<V8, I8, 8>(t);
        for (int c = 0; c < 8; ++c) Store(dst + (k0 + c) * rows + i0 + h, t[c] * scale);
      }
    }
    for (; k0 < d; ++k0)
      for (int r = 0; r < 16; ++r) dst[k0 * rows + i0 + r] = src[(i0 + r) * d + k0] * scale;
  }
}

// dst[i, :] = src[rows[i] * stride, 0:d] as float, then zero rows up to `padded`.
template <typename T>
inline void GatherRows(const T* src, int stride, const std::vector<int>& rows, int d, int padded,
                       float* __restrict dst) {
  const int n = static_cast<int>(rows.size());
  for (int i = 0; i < n; ++i) {
    const T* __restrict row = src + rows[i] * stride;
    for (int k = 0; k < d; ++k) dst[i * d + k] = static_cast<float>(row[k]);
  }
  std::fill(dst + n * d, dst + padded * d, 0.0f);
}

// Per-thread scratch memory, grown as needed and kept between calls.
inline float* Scratch(size_t size) {
  static thread_local std::vector<float> buffer;
  if (buffer.size() < size) buffer.resize(size);
  return buffer.data();
}

// One (example, head): gathers the real rows, returns the head's loss and
// writes its gradient rows (real positions only) into grad_a / grad_b.
template <typename T, typename S>
class HeadWorker {
 public:
  HeadWorker(int length, int dt, int ds) : dt_(dt), ds_(ds) {
    const size_t np = (length + 15) / 16 * 16, rows = length;
    const size_t sizes[] = {np * dt, np * dt, dt * np, np * ds, np * ds, ds * np, kRows * np,
                            kRows * np, np, np, rows * np, rows * ds, rows * ds};
    size_t total = 0;
    for (size_t size : sizes) total += (size + 15) / 16 * 16;
    float* p = Scratch(total);
    float** buffers[] = {&ta_, &tb_, &tbt_, &sa_, &sb_, &sbt_, &lt_,
                         &ls_, &et_, &es_, &g_,   &ga_, &gb_};
    for (int i = 0; i < 13; ++i) {
      *buffers[i] = p;
      p += (sizes[i] + 15) / 16 * 16;
    }
  }

  float Run(const T* ta, const T* tb, const S* sa, const S* sb, int t_stride, int s_stride,
            const std::vector<int>& rows, int num_heads, bool symmetric, float* grad_a,
            float* grad_b) {
    const int n = static_cast<int>(rows.size());
    const int np = (n + 15) / 16 * 16;
    const int dt = dt_, ds = ds_;
    // Gather the rows; B sides also transposed, scaled by 1/sqrt(d), with
    // zero columns up to np.
    const float scale_t = 1.0f / std::sqrt(static_cast<float>(dt));
    const float scale_s = 1.0f / std::sqrt(static_cast<float>(ds));
    GatherRows(ta, t_stride, rows, dt, np, ta_);
    if (tb != ta) GatherRows(tb, t_stride, rows, dt, np, tb_);
    TransposeScaled(tb != ta ? tb_ : ta_, np, dt, scale_t, tbt_);
    GatherRows(sa, s_stride, rows, ds, np, sa_);
    if (sb != sa) GatherRows(sb, s_stride, rows, ds, np, sb_);
    const float* sb_rows = sb != sa ? sb_ : sa_;
    TransposeScaled(sb_rows, np, ds, scale_s, sbt_);
    // Columns n..np pad the last vector: excluded from the softmax.
    V16 tail_bias = {};
    for (int j = n; j < np; ++j) tail_bias[j % 16] = -1e30f;
    const float w = 1.0f / (static_cast<float>(n) * num_heads);

    double loss = 0.0;
    for (int i0 = 0; i0 < n; i0 += kRows) {
      const int m = std::min(kRows, n - i0);
      MatMul(Rows{ta_ + i0 * dt, dt}, m, np, dt, tbt_, np, lt_, np);
      MatMul(Rows{sa_ + i0 * ds, ds}, m, np, ds, sbt_, np, ls_, np);
      for (int r = 0; r < m; ++r) {
        loss += w * SoftmaxKL(lt_ + r * np, ls_ + r * np, np, tail_bias, w * scale_s,
                              g_ + (i0 + r) * np);
      }
    }
    if (symmetric) {
      MatMul(PlusTranspose{g_, np}, n, ds, n, sa_, ds, ga_, ds);
    } else {
      MatMul(Rows{g_, np}, n, ds, n, sb_rows, ds, ga_, ds);
      MatMul(Columns{g_, np}, n, ds, n, sa_, ds, gb_, ds);
    }
    for (int i = 0; i < n; ++i) {
      std::memcpy(grad_a + rows[i] * s_stride, ga_ + i * ds, ds * sizeof(float));
      if (!symmetric) std::memcpy(grad_b + rows[i] * s_stride, gb_ + i * ds, ds * sizeof(float));
    }
    return static_cast<float>(loss);
  }

 private:
  // One row of (scaled) logits: both softmaxes, the row's KL and G's row
  // g_scale * (q - p). With x the logits, m the row maxima and Z the sums of
  // exp(x - m), KL = sum p (x_t - x_s) - (m_t - m_s) - (log Z_t - log Z_s).
  float SoftmaxKL(const float* lt, const float* ls, int np, V16 tail_bias, float g_scale,
                  float* g) {
    const int nv = np / 16;
    const auto load = [&](const float* x, int v) {
      const V16 y = Load<V16>(x + 16 * v);
      return v == nv - 1 ? y + tail_bias : y;
    };
    V16 max_t = V16{} - 3e38f, max_s = max_t;
    for (int v = 0; v < nv; ++v) {
      const V16 xt = load(lt, v), xs = load(ls, v);
      max_t = xt > max_t ? xt : max_t;
      max_s = xs > max_s ? xs : max_s;
    }
    const float mt = HorizontalMax(max_t), ms = HorizontalMax(max_s);
    V16 sum_t = {}, sum_s = {};
    for (int v = 0; v < nv; ++v) {
      const V16 et = Exp(load(lt, v) - mt), es = Exp(load(ls, v) - ms);
      Store(et_ + 16 * v, et);
      Store(es_ + 16 * v, es);
      sum_t += et;
      sum_s += es;
    }
    const float z_t = HorizontalSum(sum_t), z_s = HorizontalSum(sum_s);
    const float inv_t = 1.0f / z_t, inv_s = 1.0f / z_s;
    V16 kl = {};
    for (int v = 0; v < nv; ++v) {
      const V16 p = Load<V16>(et_ + 16 * v) * inv_t;
      const V16 q = Load<V16>(es_ + 16 * v) * inv_s;
      kl += p * (Load<V16>(lt + 16 * v) - Load<V16>(ls + 16 * v));
      Store(g + 16 * v, (q - p) * g_scale);
    }
    return HorizontalSum(kl) - (mt - ms) - std::log(z_t / z_s);
  }

  static constexpr int kRows = 8;  // logit rows per block
  const int dt_, ds_;
  float *ta_, *tb_, *tbt_, *sa_, *sb_, *sbt_, *lt_, *ls_, *et_, *es_, *g_, *ga_, *gb_;
};

template <typename T, typename S>
class RelationKLOp : public OpKernel {
 public:
  explicit RelationKLOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_heads", &num_heads_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("symmetric", &symmetric_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& ta = ctx->input(0);
    const Tensor& tb = ctx->input(1);
    const Tensor& sa = ctx->input(2);
    const Tensor& sb = ctx->input(3);
    const Tensor& mask = ctx->input(4);
    for (const Tensor* x : {&ta, &tb, &sa, &sb}) {
      OP_REQUIRES(ctx, x->dims() == 3,
                  absl::InvalidArgumentError("relation inputs must be [batch, length, depth]"));
    }
    const int64_t batch = sa.dim_size(0), length = sa.dim_size(1);
    const int64_t d_t = ta.dim_size(2), d_s = sa.dim_size(2);
    OP_REQUIRES(ctx,
                ta.shape() == tb.shape() && sa.shape() == sb.shape() &&
                    ta.dim_size(0) == batch && ta.dim_size(1) == length,
                absl::InvalidArgumentError(
                    "teacher and student inputs must share batch and length"));
    OP_REQUIRES(ctx, mask.dims() == 2 && mask.dim_size(0) == batch && mask.dim_size(1) == length,
                absl::InvalidArgumentError("mask must be [batch, length]"));
    OP_REQUIRES(ctx, d_t % num_heads_ == 0 && d_s % num_heads_ == 0,
                absl::InvalidArgumentError("depths must be divisible by num_heads"));

    Tensor* loss = nullptr;
    Tensor* grad_a = nullptr;
    Tensor* grad_b = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch}), &loss));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, sa.shape(), &grad_a));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(
                            2, symmetric_ ? TensorShape({0}) : sb.shape(), &grad_b));
    float* ga = grad_a->flat<float>().data();
    float* gb = symmetric_ ? nullptr : grad_b->flat<float>().data();
    std::fill(ga, ga + grad_a->NumElements(), 0.0f);
    if (gb != nullptr) std::fill(gb, gb + grad_b->NumElements(), 0.0f);

    const int heads = num_heads_;
    const int dt = static_cast<int>(d_t / heads), ds = static_cast<int>(d_s / heads);
    const float* m = mask.flat<float>().data();
    std::vector<std::vector<int>> rows(batch);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t t = 0; t < length; ++t)
        if (m[b * length + t] != 0.0f) rows[b].push_back(static_cast<int>(t));

    std::vector<float> head_loss(batch * heads, 0.0f);
    const T* ta_p = ta.flat<T>().data();
    const T* tb_p = tb.flat<T>().data();
    const S* sa_p = sa.flat<S>().data();
    const S* sb_p = sb.flat<S>().data();
    auto work = [&](int64_t begin, int64_t end) {
      HeadWorker<T, S> worker(static_cast<int>(length), dt, ds);
      for (int64_t u = begin; u < end; ++u) {
        const int64_t b = u / heads, r = u % heads;
        if (rows[b].empty()) continue;
        const int64_t t_off = b * length * d_t + r * dt, s_off = b * length * d_s + r * ds;
        head_loss[u] = worker.Run(ta_p + t_off, tb_p + t_off, sa_p + s_off, sb_p + s_off,
                                  static_cast<int>(d_t), static_cast<int>(d_s), rows[b], heads,
                                  symmetric_, ga + s_off, symmetric_ ? nullptr : gb + s_off);
      }
    };
    // Cost per head in cycles, roughly: the four products and the softmaxes.
    const int64_t cost = length * length * (2 * (dt + 2 * ds) + 40);
    ctx->device()->tensorflow_cpu_worker_threads()->workers->ParallelFor(batch * heads, cost,
                                                                         work);
    float* out = loss->flat<float>().data();
    for (int64_t b = 0; b < batch; ++b) {
      float s = 0.0f;
      for (int r = 0; r < heads; ++r) s += head_loss[b * heads + r];
      out[b] = s;
    }
  }

 private:
  int num_heads_;
  bool symmetric_;
};

}  // namespace
}  // namespace minilm_tf

REGISTER_OP("MiniLMRelationKL")
    .Input("teacher_a: T")
    .Input("teacher_b: T")
    .Input("student_a: S")
    .Input("student_b: S")
    .Input("mask: float")
    .Output("loss: float")
    .Output("grad_a: float")
    .Output("grad_b: float")
    .Attr("T: {float, bfloat16}")
    .Attr("S: {float, bfloat16}")
    .Attr("num_heads: int >= 1")
    .Attr("symmetric: bool")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle student;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 3, &student));
      bool symmetric;
      TF_RETURN_IF_ERROR(c->GetAttr("symmetric", &symmetric));
      c->set_output(0, c->Vector(c->Dim(student, 0)));
      c->set_output(1, student);
      c->set_output(2, symmetric ? c->Vector(0) : c->input(3));
      return absl::OkStatus();
    })
    .Doc("MiniLM relation KL per example and its gradients wrt the student inputs.");

#define MINILM_REGISTER(T, S)                                  \
  REGISTER_KERNEL_BUILDER(Name("MiniLMRelationKL")             \
                              .Device(::tensorflow::DEVICE_CPU) \
                              .TypeConstraint<T>("T")          \
                              .TypeConstraint<S>("S"),         \
                          ::minilm_tf::RelationKLOp<T, S>);
MINILM_REGISTER(float, float)
MINILM_REGISTER(float, ::tensorflow::bfloat16)
MINILM_REGISTER(::tensorflow::bfloat16, float)
MINILM_REGISTER(::tensorflow::bfloat16, ::tensorflow::bfloat16)
#undef MINILM_REGISTER
