//! Every int8 kernel against a plain reference of the same quantization.

use super::*;

fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// The quantized product computed plainly in f64 from the same integers and scales: every
/// kernel must match it to f32 rounding of the epilogue (the integer sums are exact).
/// `seven_bit`: A quantized as `Layout::U7` wants it (else 8-bit symmetric).
fn quantized_reference(
    a: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (m, k, n): (usize, usize, usize),
    seven_bit: bool,
) -> Vec<f32> {
    let mut w_scale = vec![0.0f32; n];
    for kk in 0..k {
        for j in 0..n {
            w_scale[j] = w_scale[j].max(w[kk * n + j].abs());
        }
    }
    let w_scale: Vec<f32> = w_scale.iter().map(|s| s / 127.0).collect();
    let q = |v: f32, s: f32| {
        if s > 0.0 {
            (v * (1.0 / s)).round_ties_even().clamp(-127.0, 127.0) as f64
        } else {
            0.0
        }
    };
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        let row = &a[i * k..(i + 1) * k];
        let peak = row.iter().fold(0.0f32, |p, v| p.max(v.abs()));
        let (lo, hi) = row
            .iter()
            .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        // x = a_scale * (qa - zero), qa an integer.
        let (a_scale, qa): (f32, Box<dyn Fn(f32) -> f64>) = match seven_bit {
            false => {
                let inv = if peak > 0.0 { 127.0 / peak } else { 0.0 };
                let qa = move |x: f32| (x * inv).round_ties_even().clamp(-127.0, 127.0);
                (peak / 127.0, Box::new(move |x| qa(x) as f64))
            }
            true if hi > lo => {
                let (scale, inv) = ((hi - lo) / 127.0, 1.0 / ((hi - lo) / 127.0));
                let zero = (-lo * inv).round_ties_even().clamp(0.0, 127.0);
                let qa = move |x: f32| (x * inv + zero).round_ties_even().clamp(0.0, 127.0);
                (scale, Box::new(move |x| (qa(x) - zero) as f64))
            }
            true => (0.0, Box::new(|_| 0.0)),
        };
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|kk| qa(row[kk]) * q(w[kk * n + j], w_scale[j]))
                .sum();
            out[i * n + j] = (dot * a_scale as f64 * w_scale[j] as f64
                + bias.map_or(0.0, |b| b[j] as f64)) as f32;
        }
    }
    out
}

#[test]
fn rounding_matches_std_including_ties() {
    for i in -600..=600 {
        let x = i as f32 * 0.25 + if i % 7 == 0 { 1e-3 } else { 0.0 };
        let want = x.round_ties_even().clamp(-127.0, 127.0) as i8;
        assert_eq!(round_i8(x), want, "{x}");
    }
}

/// Every int8 kernel this CPU has on shapes that hit every edge (rows and columns past the
/// tile, k not a multiple of the group, k = 0, a zero row), against the quantized
/// reference; and the quantization error against the f32 product stays at 8-bit size.
#[test]
fn kernels_match_quantized_reference_on_edge_shapes() {
    for kern in kernels().into_iter().chain(reference_kernels()) {
        for &(m, k, n, with_bias) in &[
            (1, 1, 1, false),
            (5, 3, 7, true),
            (13, 257, 33, true),
            (25, 600, 70, false),
            (97, 301, 65, true),
            (12, 0, 48, true),
            (9, 768, 96, true),
            // AMX's short tiles up to 16 rows (3 steps: the odd tail), and past them.
            (16, 130, 64, true),
            (17, 64, 32, false),
        ] {
            let mut a = values(m * k, 1);
            if m > 2 {
                a[k..2 * k].fill(0.0);
            }
            // Rows of one sign: a 7-bit zero point at either end of its range.
            if m > 4 {
                a[2 * k..3 * k]
                    .iter_mut()
                    .for_each(|v| *v = 0.5 * v.abs() + 0.5);
                a[3 * k..4 * k].iter_mut().for_each(|v| *v = -v.abs());
            }
            let w = values(k * n, 2);
            let bias = with_bias.then(|| values(n, 3));
            let packed = QuantMatrix::pack_for(kern, &w, k, n, bias.as_deref());
            let mut out = vec![f32::NAN; m * n];
            packed.matmul(&a, m, &mut out);
            let seven_bit = kern.layout == Layout::U7;
            let want = quantized_reference(&a, &w, bias.as_deref(), (m, k, n), seven_bit);
            for (i, (got, want)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{m}x{k}x{n} ({}) element {i}: {got} vs {want}",
                    kern.name
                );
            }
            // 8-bit steps on both sides (7 for A, over its whole range, in `U7`): error
            // well under 2% of the dot product's scale.
            for i in 0..m {
                for j in 0..n {
                    let exact: f32 = bias.as_ref().map_or(0.0, |b| b[j])
                        + (0..k).map(|kk| a[i * k + kk] * w[kk * n + j]).sum::<f32>();
                    let tol = 0.02 * (k as f32).sqrt() * 0.6 + 1e-5;
                    assert!(
                        (out[i * n + j] - exact).abs() <= tol,
                        "{m}x{k}x{n} ({}) ({i},{j}): {} vs f32 {exact}",
                        kern.name,
                        out[i * n + j]
                    );
                }
            }
        }
    }
}
