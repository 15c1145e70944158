//! The measures behind the leakage checks: how well one column (or the row order) predicts
//! the label. Pure functions over a sample, no I/O; see `leakage` for what each measure
//! means and its threshold.

use std::collections::HashMap;

use crate::scoring::split::mix64;

/// Most distinct values tracked per column for value → label measures.
pub const MAX_DISTINCT: usize = 1000;

/// How labels are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// Class codes.
    Classes,
    /// Numbers.
    Values,
}

/// Rows per (value, label), or None past [`MAX_DISTINCT`] values.
pub fn value_groups(hashes: &[u64], ys: &[f64]) -> Option<HashMap<u64, Vec<(u64, u64)>>> {
    let mut g: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    for (&h, &y) in hashes.iter().zip(ys) {
        if !g.contains_key(&h) && g.len() >= MAX_DISTINCT {
            return None;
        }
        let labels = g.entry(h).or_default();
        match labels.iter_mut().find(|(l, _)| *l == y.to_bits()) {
            Some((_, c)) => *c += 1,
            None => labels.push((y.to_bits(), 1)),
        }
    }
    Some(g)
}

/// (distinct values, accuracy of each value's majority class, majority class share).
pub fn class_purity(g: &HashMap<u64, Vec<(u64, u64)>>, n: usize) -> (usize, f64, f64) {
    let hits: u64 = g
        .values()
        .map(|ls| ls.iter().map(|l| l.1).max().unwrap_or(0))
        .sum();
    let mut per_class: HashMap<u64, u64> = HashMap::new();
    for ls in g.values() {
        for &(l, c) in ls {
            *per_class.entry(l).or_default() += c;
        }
    }
    let base = per_class.values().copied().max().unwrap_or(0) as f64 / n as f64;
    (g.len(), hits as f64 / n as f64, base)
}

pub fn eta_squared(g: &HashMap<u64, Vec<(u64, u64)>>, ys: &[f64]) -> f64 {
    let n = ys.len() as f64;
    let mean = ys.iter().sum::<f64>() / n;
    let total: f64 = ys.iter().map(|y| (y - mean).powi(2)).sum();
    if total == 0.0 {
        return 0.0;
    }
    let between: f64 = g
        .values()
        .map(|ls| {
            let c: u64 = ls.iter().map(|l| l.1).sum();
            let s: f64 = ls.iter().map(|&(l, k)| f64::from_bits(l) * k as f64).sum();
            let m = s / c as f64;
            c as f64 * (m - mean).powi(2)
        })
        .sum();
    between / total
}

/// The ordering measure that fits the target: AUC, ordering agreement or Spearman.
pub fn ordering_measure(x: &[f64], y: &[f64], kind: TargetKind) -> Option<(&'static str, f64)> {
    match kind {
        TargetKind::Values => spearman(x, y).map(|r| ("spearman", r.abs())),
        TargetKind::Classes => {
            let mut classes: Vec<u64> = y.iter().map(|v| v.to_bits()).collect();
            classes.sort_unstable();
            classes.dedup();
            match classes.len() {
                0 | 1 => None,
                2 => auc(x, y, f64::from_bits(classes[1])).map(|a| ("auc", a.max(1.0 - a))),
                _ => ordering_agreement(x, y).map(|k| ("ordering_agreement", k)),
            }
        }
    }
}

fn order_by(x: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| {
        x[a].total_cmp(&x[b])
            .then(mix64(a as u64).cmp(&mix64(b as u64)))
    });
    idx
}

/// The Mann-Whitney AUC of `x` as a score for `y == positive`, ties counting half.
pub fn auc(x: &[f64], y: &[f64], positive: f64) -> Option<f64> {
    let idx = order_by(x);
    let (mut u, mut neg_below, mut pos_total) = (0.0, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        let (mut p, mut q) = (0.0, 0.0);
        while j < idx.len() && x[idx[j]] == x[idx[i]] {
            if y[idx[j]] == positive {
                p += 1.0;
            } else {
                q += 1.0;
            }
            j += 1;
        }
        u += p * neg_below + 0.5 * p * q;
        neg_below += q;
        pos_total += p;
        i = j;
    }
    let pairs = pos_total * neg_below;
    (pairs > 0.0).then(|| u / pairs)
}

/// How much fewer class changes than chance there are between neighbours in `x`'s order,
/// as a kappa in [0, 1] (1: the order separates the classes into runs, one per class).
pub fn ordering_agreement(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = y.len();
    let idx = order_by(x);
    let changes = idx.windows(2).filter(|w| y[w[0]] != y[w[1]]).count() as f64;
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for v in y {
        *counts.entry(v.to_bits()).or_default() += 1;
    }
    let k = counts.len() as f64;
    let n_f = n as f64;
    if n_f <= k + 1.0 {
        return None;
    }
    let sum_p2: f64 = counts.values().map(|&c| (c as f64 / n_f).powi(2)).sum();
    let expected = (n_f - 1.0) * (1.0 - sum_p2);
    let agree = |c: f64| (1.0 - (c - (k - 1.0)) / (n_f - k)).clamp(0.0, 1.0);
    let (a, chance) = (agree(changes), agree(expected));
    (chance < 1.0).then(|| ((a - chance) / (1.0 - chance)).max(0.0))
}

fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && v[idx[j]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j - 1) as f64 / 2.0 + 1.0;
        for &k in &idx[i..j] {
            r[k] = avg;
        }
        i = j;
    }
    r
}

/// Spearman's rank correlation (average ranks for ties); None when one side is constant.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    let (rx, ry) = (ranks(x), ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_hand_counts_with_ties_at_half() {
        let x = [0.1, 0.4, 0.35, 0.8];
        let y = [0.0, 0.0, 1.0, 1.0];
        assert_eq!(auc(&x, &y, 1.0), Some(0.75));
        assert_eq!(auc(&[1.0, 1.0], &[0.0, 1.0], 1.0), Some(0.5));
    }

    #[test]
    fn an_order_that_separates_classes_agrees_fully_and_a_random_one_does_not() {
        let n = 3000;
        let y: Vec<f64> = (0..n).map(|i| (i % 3) as f64).collect();
        let sorted: Vec<f64> = y.iter().map(|c| c * 10.0 + 0.5).collect();
        assert!(ordering_agreement(&sorted, &y).unwrap() > 0.99);
        let random: Vec<f64> = (0..n).map(|i| (mix64(i as u64) % 1000) as f64).collect();
        assert!(ordering_agreement(&random, &y).unwrap() < 0.1);
    }

    #[test]
    fn spearman_sees_monotone_relations_and_ignores_noise() {
        let x: Vec<f64> = (0..200).map(f64::from).collect();
        let y: Vec<f64> = x.iter().map(|v| v.powi(3)).collect();
        assert!((spearman(&x, &y).unwrap() - 1.0).abs() < 1e-12);
        let noise: Vec<f64> = (0..200).map(|i| (mix64(i) % 97) as f64).collect();
        assert!(spearman(&x, &noise).unwrap().abs() < 0.3);
    }
}
