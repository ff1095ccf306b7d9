/*
 * A float-heavy test program for crane86: a radix-2 FFT and a Mandelbrot set, each in
 * single precision and double precision (SSE scalar and, where the compiler vectorises,
 * packed SSE2) and in long double (the x87 with 64-bit significands), plus conversions.
 * It prints one checksum line per kernel: an FNV-1a hash of the results' bit patterns, so
 * any difference in any rounding shows.
 *
 * Built twice from this one source (see tests/float_guest.rs): as an ordinary host program
 * (-DHOST), which gives the expected output from the host CPU, and as a freestanding flat
 * 64-bit guest (flat.ld), which writes to COM1 and leaves through isa-debug-exit.
 */

typedef unsigned long long u64;

#ifdef HOST
#include <stdio.h>
static void put(char c) { putchar(c); }
#else
static void put(char c)
{
    __asm__ volatile("outb %0, %1" : : "a"(c), "Nd"((unsigned short)0x3f8));
}
/* The entry point: a stack, the x87 initialised as an OS leaves it for user code, main,
 * then isa-debug-exit with status 0. */
__asm__(".section .text.entry, \"ax\"\n"
        ".globl _start\n"
        "_start:\n"
        "  mov $0x200000, %rsp\n"
        "  fninit\n"
        "  call guest_main\n"
        "  xor %eax, %eax\n"
        "  out %al, $0xf4\n"
        "1: hlt\n"
        "  jmp 1b\n"
        ".text\n");
#endif

static void print(const char *s)
{
    while (*s)
        put(*s++);
}

static void hex64(u64 v)
{
    for (int i = 60; i >= 0; i -= 4)
        put("0123456789abcdef"[(v >> i) & 15]);
}

static u64 mix(u64 h, const void *p, int n)
{
    const unsigned char *b = p;
    for (int i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#define FNV 0xcbf29ce484222325ULL

/* Everything below is written once per floating-point type. */
#define KERNELS(T, NAME, BYTES)                                                              \
    static T NAME##_sin(T x)                                                                 \
    {                                                                                        \
        T term = x, sum = x;                                                                 \
        for (int k = 1; k < 24; k++) {                                                       \
            term = -term * x * x / (T)((2 * k) * (2 * k + 1));                               \
            sum += term;                                                                     \
        }                                                                                    \
        return sum;                                                                          \
    }                                                                                        \
    static T NAME##_cos(T x)                                                                 \
    {                                                                                        \
        T term = 1, sum = 1;                                                                 \
        for (int k = 1; k < 24; k++) {                                                       \
            term = -term * x * x / (T)((2 * k - 1) * (2 * k));                               \
            sum += term;                                                                     \
        }                                                                                    \
        return sum;                                                                          \
    }                                                                                        \
    static T NAME##_re[256], NAME##_im[256];                                                 \
    static u64 NAME##_fft(int n)                                                             \
    {                                                                                        \
        const T pi = (T)3.14159265358979323846264338327950288L;                              \
        for (int i = 0; i < n; i++) {                                                        \
            NAME##_re[i] = (T)((i * 7) % 13 - 6) + (T)i / (T)n;                              \
            NAME##_im[i] = (T)((i * 5) % 11) * (T)0.125 - (T)1 / (T)(i + 1);                 \
        }                                                                                    \
        for (int i = 1, j = 0; i < n; i++) {                                                 \
            int bit = n >> 1;                                                                \
            for (; j & bit; bit >>= 1)                                                       \
                j ^= bit;                                                                    \
            j ^= bit;                                                                        \
            if (i < j) {                                                                     \
                T t = NAME##_re[i];                                                          \
                NAME##_re[i] = NAME##_re[j];                                                 \
                NAME##_re[j] = t;                                                            \
                t = NAME##_im[i];                                                            \
                NAME##_im[i] = NAME##_im[j];                                                 \
                NAME##_im[j] = t;                                                            \
            }                                                                                \
        }                                                                                    \
        for (int len = 2; len <= n; len <<= 1) {                                             \
            T ang = -2 * pi / (T)len;                                                        \
            T wr = NAME##_cos(ang), wi = NAME##_sin(ang);                                    \
            for (int i = 0; i < n; i += len) {                                               \
                T cr = 1, ci = 0;                                                            \
                for (int k = 0; k < len / 2; k++) {                                          \
                    int a = i + k, b = i + k + len / 2;                                      \
                    T xr = NAME##_re[b] * cr - NAME##_im[b] * ci;                            \
                    T xi = NAME##_re[b] * ci + NAME##_im[b] * cr;                            \
                    NAME##_re[b] = NAME##_re[a] - xr;                                        \
                    NAME##_im[b] = NAME##_im[a] - xi;                                        \
                    NAME##_re[a] += xr;                                                      \
                    NAME##_im[a] += xi;                                                      \
                    T t = cr * wr - ci * wi;                                                 \
                    ci = cr * wi + ci * wr;                                                  \
                    cr = t;                                                                  \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
        u64 h = FNV;                                                                         \
        for (int i = 0; i < n; i++) {                                                        \
            h = mix(h, &NAME##_re[i], BYTES);                                                \
            h = mix(h, &NAME##_im[i], BYTES);                                                \
        }                                                                                    \
        return h;                                                                            \
    }                                                                                        \
    static u64 NAME##_mandel(int w, int hgt, int iters)                                      \
    {                                                                                        \
        u64 h = FNV;                                                                         \
        for (int y = 0; y < hgt; y++) {                                                      \
            for (int x = 0; x < w; x++) {                                                    \
                T c_re = (T)-2.25 + (T)3 * (T)x / (T)w;                                      \
                T c_im = (T)-1.25 + (T)2.5 * (T)y / (T)hgt;                                  \
                T zr = 0, zi = 0;                                                            \
                int k = 0;                                                                   \
                while (k < iters && zr * zr + zi * zi <= (T)4) {                             \
                    T t = zr * zr - zi * zi + c_re;                                          \
                    zi = (T)2 * zr * zi + c_im;                                              \
                    zr = t;                                                                  \
                    k++;                                                                     \
                }                                                                            \
                long long q = (long long)(zr * (T)1e6);                                      \
                h = mix(h, &k, sizeof k);                                                    \
                h = mix(h, &q, sizeof q);                                                    \
            }                                                                                \
        }                                                                                    \
        return h;                                                                            \
    }                                                                                        \
    static u64 NAME##_misc(void)                                                             \
    {                                                                                        \
        u64 h = FNV;                                                                         \
        T acc = (T)0.5;                                                                      \
        for (int i = 1; i < 2000; i++) {                                                     \
            T v = (T)(i * 37 % 1001) / (T)7 - (T)70;                                         \
            acc = acc * (T)0.999 + v / (T)i;                                                 \
            int as_int = (int)acc;                                                           \
            long long as_ll = (long long)(acc * (T)1e9);                                     \
            unsigned u = (unsigned)(v < 0 ? -v : v);                                         \
            h = mix(h, &as_int, sizeof as_int);                                              \
            h = mix(h, &as_ll, sizeof as_ll);                                                \
            h = mix(h, &u, sizeof u);                                                        \
            T s = __builtin_sqrt((double)(acc < 0 ? -acc : acc));                            \
            h = mix(h, &s, BYTES);                                                           \
        }                                                                                    \
        return h;                                                                            \
    }

KERNELS(float, f32, 4)
KERNELS(double, f64, 8)
KERNELS(long double, f80, 10)

static void line(const char *name, u64 v)
{
    print(name);
    put('=');
    hex64(v);
    put('\n');
}

#ifdef HOST
int main(void)
#else
void guest_main(void)
#endif
{
    line("fft32", f32_fft(256));
    line("fft64", f64_fft(256));
    line("fft80", f80_fft(256));
    line("mandel32", f32_mandel(48, 24, 200));
    line("mandel64", f64_mandel(48, 24, 200));
    line("mandel80", f80_mandel(48, 24, 200));
    line("misc32", f32_misc());
    line("misc64", f64_misc());
    line("misc80", f80_misc());
#ifdef HOST
    return 0;
#endif
}
