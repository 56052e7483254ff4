//! The sequence-parallel dilated-attention operator over a [`Group`] of GPUs, rank r holding
//! positions r·l .. (r + 1)·l of every (B, H, N, D) tensor as its own (B, H, l, D).
//!
//! Streams: NCCL's communicators are bound to each device's own stream, so the gathers (and in
//! the backward the reduce-scatters) run there, after the sparsify kernels that feed them; the
//! local patterns' kernels go to a second stream of each device and overlap the communication.
//! The two streams meet once, before the gathered patterns merge into the same O, L (or add
//! into the same dQ, dK, dV), which must not race with the local patterns' merges.

use std::collections::HashMap;
use std::sync::Arc;

use tessel_package::DType;

use super::plan::{Plan, RankPattern};
use crate::attention::AttentionGrads;
use crate::collective::Group;
use crate::cuda::CudaStream;
use crate::dilated::{DilatedOptions, GradMode, HeadOffsets};
use crate::operand::{bad, flag, same_dtype, softmax_scale, variant};
use crate::spec::{dilated as local_spec, dilated_sp as spec};
use crate::{Arg, DeviceTensor, LoadedPackage, RuntimeError};

const OP: &str = "dilated_attention_sequence_parallel";

/// A rank's two packages: the single-device kernels (local patterns) and the gathered ones.
pub struct RankPackages {
    pub dilated: LoadedPackage,
    pub sp: LoadedPackage,
}

/// The ranks of one split, with the communicators of each segment of ranks (built when a plan
/// first needs them: NCCL's collectives run over a whole communicator, and a segment of g < P
/// ranks gathers among its own).
pub struct SequenceParallel {
    pub group: Group,
    pub packages: Vec<RankPackages>,
    segments: HashMap<Vec<usize>, Group>,
}

/// Every rank's O and combined L, and the gathered K̃, Ṽ the backward reuses ([pattern][rank],
/// None where the pattern is local to the rank).
pub struct SpOutput {
    pub o: Vec<DeviceTensor>,
    pub lse: Vec<DeviceTensor>,
    gathered: PerRank,
}

/// A (K̃, Ṽ) pair per pattern and rank, None where the pattern is local to the rank.
type PerRank = Vec<Vec<Option<(DeviceTensor, DeviceTensor)>>>;

/// One rank's view of one pattern.
#[derive(Clone)]
struct Step {
    i: usize,
    r: usize,
    head_group: usize,
    place: RankPattern,
}

fn entry<'p>(
    pkg: &'p LoadedPackage,
    kernel: &str,
    d: usize,
    dtype: DType,
    extra: &[(&str, &'static str)],
) -> Result<&'p str, RuntimeError> {
    let d = d.to_string();
    let mut consts = vec![("D", d.as_str()), ("T", dtype.name())];
    consts.extend_from_slice(extra);
    variant(pkg, kernel, &consts)
}

impl SequenceParallel {
    pub fn new(group: Group, packages: Vec<RankPackages>) -> Result<Self, RuntimeError> {
        if packages.len() != group.size() {
            return Err(bad(
                OP,
                format!("{} packages for {} ranks", packages.len(), group.size()),
            ));
        }
        Ok(Self {
            group,
            packages,
            segments: HashMap::new(),
        })
    }

    pub fn ranks(&self) -> usize {
        self.group.size()
    }

    /// The plan of this split for `n` positions, and each rank's steps in launch order.
    fn steps(
        &self,
        n: usize,
        heads: usize,
        opts: &DilatedOptions,
    ) -> Result<(Plan, Vec<Vec<Step>>), RuntimeError> {
        let plan =
            Plan::new(n, self.ranks(), &opts.patterns).map_err(|e| bad(OP, e.to_string()))?;
        let mut order: Vec<usize> = (0..opts.patterns.len()).collect();
        order.sort_by_key(|&i| opts.patterns[i].r != 1);
        let steps = (0..self.ranks())
            .map(|rank| {
                order
                    .iter()
                    .map(|&i| {
                        let r = opts.patterns[i].r;
                        Step {
                            i,
                            r,
                            head_group: match opts.offsets {
                                HeadOffsets::Paper => 1,
                                HeadOffsets::Torchscale => heads.div_ceil(r).max(1),
                            },
                            place: plan.rank(i, rank, opts.causal),
                        }
                    })
                    .collect()
            })
            .collect();
        Ok((plan, steps))
    }

    /// Builds the communicators every segment of `steps` needs (before any launch).
    fn ensure_segments(&mut self, steps: &[Vec<Step>]) -> Result<(), RuntimeError> {
        for s in steps.iter().flatten() {
            if let RankPattern::Gathered { members, .. } = &s.place {
                if members.len() < self.ranks() && !self.segments.contains_key(members) {
                    let devs = members
                        .iter()
                        .map(|&m| self.group.device(m).clone())
                        .collect();
                    self.segments.insert(members.clone(), Group::new(devs)?);
                }
            }
        }
        Ok(())
    }

    fn segment(&self, members: &[usize]) -> &Group {
        if members.len() == self.ranks() {
            &self.group
        } else {
            &self.segments[members]
        }
    }

    fn check(
        &self,
        q: &[DeviceTensor],
        k: &[DeviceTensor],
        v: &[DeviceTensor],
    ) -> Result<(DType, Vec<usize>), RuntimeError> {
        if q.len() != self.ranks() || k.len() != self.ranks() || v.len() != self.ranks() {
            return Err(bad(
                OP,
                format!("one q, k, v per rank: {} ranks", self.ranks()),
            ));
        }
        let shape = q[0].shape.clone();
        if shape.len() != 4 {
            return Err(bad(OP, format!("q is {shape:?}, not (B, H, l, D)")));
        }
        for t in q.iter().chain(k).chain(v) {
            if t.shape != shape {
                return Err(bad(
                    OP,
                    format!(
                        "every rank's q, k, v must be {shape:?}, one is {:?}",
                        t.shape
                    ),
                ));
            }
        }
        let named: Vec<(&str, &DeviceTensor)> =
            q.iter().chain(k).chain(v).map(|t| ("q/k/v", t)).collect();
        Ok((same_dtype(OP, &named)?, shape))
    }
}

/// A second stream per rank, ordered after everything queued on the rank's own stream so far.
fn side_streams(group: &Group) -> Result<Vec<Arc<CudaStream>>, RuntimeError> {
    group
        .devices()
        .iter()
        .map(|d| {
            let s = d.new_stream()?;
            d.wait(&s, &d.record(d.stream())?)?;
            Ok(s)
        })
        .collect()
}

/// The rank's own stream waits for its side stream.
fn join(group: &Group, side: &[Arc<CudaStream>]) -> Result<(), RuntimeError> {
    for (d, s) in group.devices().iter().zip(side) {
        d.wait(d.stream(), &d.record(s)?)?;
    }
    Ok(())
}

fn scalars<'a>(xs: &[f64]) -> Vec<Arg<'a>> {
    xs.iter().map(|&x| Arg::Scalar(x)).collect()
}

/// Whether rank's first launch is a local r = 1 pattern (which writes rather than merges).
fn first_writes(steps: &[Step]) -> bool {
    matches!(steps.first(), Some(s) if s.r == 1 && matches!(s.place, RankPattern::Local { .. }))
}

/// The (K̃, Ṽ) of every gathered pattern: sparsify on each rank's stream, then the segment's
/// all-gather, both on the ranks' own streams.
fn gather(
    sp: &SequenceParallel,
    steps: &[Vec<Step>],
    k: &[DeviceTensor],
    v: &[DeviceTensor],
    (dtype, shape): (DType, &[usize]),
) -> Result<PerRank, RuntimeError> {
    let npat = steps[0].len();
    let mut out: PerRank = (0..npat)
        .map(|_| (0..sp.ranks()).map(|_| None).collect())
        .collect();
    for (n, _) in steps[0].iter().enumerate() {
        // Segments of this pattern, each gathered once.
        let mut done: Vec<Vec<usize>> = Vec::new();
        for st in steps {
            let s = &st[n];
            let RankPattern::Gathered { members, rows, .. } = &s.place else {
                continue;
            };
            if done.contains(members) {
                continue;
            }
            done.push(members.clone());
            let (b, h, d) = (shape[0], shape[1], shape[3]);
            let mut sends = (Vec::new(), Vec::new());
            let mut recvs = (Vec::new(), Vec::new());
            for &m in members {
                let dev = sp.group.device(m);
                let pkg = &sp.packages[m].sp;
                let ks = DeviceTensor::empty(dev, dtype, &[b, h, *rows, d])?;
                let vs = DeviceTensor::empty(dev, dtype, &[b, h, *rows, d])?;
                let name = entry(pkg, spec::SPARSIFY, d, dtype, &[])?;
                let mut args = vec![
                    Arg::Tensor(&k[m]),
                    Arg::Tensor(&v[m]),
                    Arg::Tensor(&ks),
                    Arg::Tensor(&vs),
                ];
                args.extend(scalars(&[s.r as f64, s.head_group as f64]));
                pkg.launch(dev, name, &args)?;
                let g = members.len();
                recvs
                    .0
                    .push(DeviceTensor::empty(dev, dtype, &[g, b, h, *rows, d])?);
                recvs
                    .1
                    .push(DeviceTensor::empty(dev, dtype, &[g, b, h, *rows, d])?);
                sends.0.push(ks);
                sends.1.push(vs);
            }
            let group = sp.segment(members);
            group.all_gather(&sends.0, &mut recvs.0)?;
            group.all_gather(&sends.1, &mut recvs.1)?;
            for ((&m, kg), vg) in members.iter().zip(recvs.0).zip(recvs.1) {
                out[s.i][m] = Some((kg, vg));
            }
        }
    }
    Ok(out)
}

/// Sequence-parallel dilated attention's O and combined L on every rank: equal, block by block,
/// to the single-device operator's over the whole sequence.
pub fn sp_forward(
    sp: &mut SequenceParallel,
    q: &[DeviceTensor],
    k: &[DeviceTensor],
    v: &[DeviceTensor],
    opts: &DilatedOptions,
) -> Result<SpOutput, RuntimeError> {
    let (dtype, shape) = sp.check(q, k, v)?;
    let (b, h, l, d) = (shape[0], shape[1], shape[2], shape[3]);
    let (_, steps) = sp.steps(l * sp.ranks(), h, opts)?;
    sp.ensure_segments(&steps)?;
    let scale = softmax_scale(OP, opts.scale, d)? as f64;
    let causal = flag(opts.causal);
    // Every variant is looked up before anything is allocated or launched.
    for p in &sp.packages {
        entry(&p.sp, spec::SPARSIFY, d, dtype, &[])?;
        for f in ["true", "false"] {
            entry(
                &p.dilated,
                local_spec::FWD,
                d,
                dtype,
                &[("CAUSAL", causal), ("FIRST", f)],
            )?;
            entry(
                &p.sp,
                spec::FWD,
                d,
                dtype,
                &[("CAUSAL", causal), ("FIRST", f)],
            )?;
        }
    }
    let mut o = Vec::with_capacity(sp.ranks());
    let mut lse = Vec::with_capacity(sp.ranks());
    for (rank, st) in steps.iter().enumerate() {
        let dev = sp.group.device(rank);
        let (ot, lt) = (
            DeviceTensor::empty(dev, dtype, &shape)?,
            DeviceTensor::empty(dev, DType::F32, &[b, h, l])?,
        );
        if !first_writes(st) {
            ot.fill(dev, 0.0)?;
            lt.fill(dev, f64::NEG_INFINITY)?;
        }
        o.push(ot);
        lse.push(lt);
    }
    let side = side_streams(&sp.group)?;
    // The local patterns first, on the side streams, overlapping the gathers queued next.
    for (rank, st) in steps.iter().enumerate() {
        let (dev, pkg) = (sp.group.device(rank), &sp.packages[rank].dilated);
        let mut first = first_writes(st);
        for s in st {
            let RankPattern::Local { segment } = s.place else {
                continue;
            };
            let name = entry(
                pkg,
                local_spec::FWD,
                d,
                dtype,
                &[("CAUSAL", causal), ("FIRST", flag(first))],
            )?;
            first = false;
            let mut args = vec![
                Arg::Tensor(&q[rank]),
                Arg::Tensor(&k[rank]),
                Arg::Tensor(&v[rank]),
                Arg::Tensor(&o[rank]),
                Arg::Tensor(&lse[rank]),
            ];
            args.extend(scalars(&[
                scale,
                segment as f64,
                s.r as f64,
                s.head_group as f64,
            ]));
            pkg.launch_on(dev, &side[rank], name, &args)?;
        }
    }
    let gathered = gather(sp, &steps, k, v, (dtype, &shape))?;
    join(&sp.group, &side)?;
    for (rank, st) in steps.iter().enumerate() {
        let (dev, pkg) = (sp.group.device(rank), &sp.packages[rank].sp);
        // A gathered pattern never writes first: a local r = 1 one did, or O, L were filled.
        for s in st {
            let RankPattern::Gathered { me, .. } = s.place else {
                continue;
            };
            let (kg, vg) = gathered[s.i][rank].as_ref().expect("gathered above");
            let name = entry(
                pkg,
                spec::FWD,
                d,
                dtype,
                &[("CAUSAL", causal), ("FIRST", "false")],
            )?;
            let mut args = vec![
                Arg::Tensor(&q[rank]),
                Arg::Tensor(kg),
                Arg::Tensor(vg),
                Arg::Tensor(&o[rank]),
                Arg::Tensor(&lse[rank]),
            ];
            args.extend(scalars(&[
                scale,
                s.r as f64,
                s.head_group as f64,
                me as f64,
            ]));
            pkg.launch(dev, name, &args)?;
        }
    }
    Ok(SpOutput { o, lse, gathered })
}

/// Every rank's dQ, dK, dV of [`sp_forward`] given each rank's dO, in `mode`.
pub fn sp_backward(
    sp: &mut SequenceParallel,
    [q, k, v]: [&[DeviceTensor]; 3],
    fwd: &SpOutput,
    d_o: &[DeviceTensor],
    opts: &DilatedOptions,
    mode: GradMode,
) -> Result<Vec<AttentionGrads>, RuntimeError> {
    let (dtype, shape) = sp.check(q, k, v)?;
    sp.check(d_o, &fwd.o, d_o)?;
    let (b, h, l, d) = (shape[0], shape[1], shape[2], shape[3]);
    let (_, steps) = sp.steps(l * sp.ranks(), h, opts)?;
    if fwd.gathered.len() != opts.patterns.len() {
        return Err(bad(OP, "the forward ran other patterns".into()));
    }
    let scale = opts.scale.unwrap_or(1.0 / (d as f32).sqrt()) as f64;
    let c = ("CAUSAL", flag(opts.causal));
    let rows = [b, h, l];
    let mut grads = Vec::with_capacity(sp.ranks());
    // δ per rank: the exact mode's one, or torchscale's per pattern (a buffer each: the
    // gathered patterns' dQ runs after the streams join, when every δ_p must still be there).
    let mut deltas: Vec<Vec<DeviceTensor>> = Vec::with_capacity(sp.ranks());
    for (rank, st) in steps.iter().enumerate() {
        let (dev, p) = (sp.group.device(rank), &sp.packages[rank]);
        let g = AttentionGrads {
            dq: DeviceTensor::empty(dev, dtype, &shape)?,
            dk: DeviceTensor::empty(dev, dtype, &shape)?,
            dv: DeviceTensor::empty(dev, dtype, &shape)?,
        };
        if !first_writes(st) {
            for t in [&g.dq, &g.dk, &g.dv] {
                t.fill(dev, 0.0)?;
            }
        }
        let n = if mode == GradMode::Exact { 1 } else { st.len() };
        let ds = (0..n)
            .map(|_| DeviceTensor::empty(dev, DType::F32, &rows))
            .collect::<Result<Vec<_>, _>>()?;
        if mode == GradMode::Exact {
            let pre = entry(&p.dilated, local_spec::BWD_PREPROCESS, d, dtype, &[])?;
            p.dilated
                .launch_tensors(dev, pre, &[&fwd.o[rank], &d_o[rank], &ds[0]])?;
        }
        grads.push(g);
        deltas.push(ds);
    }
    let delta = |rank: usize, n: usize| &deltas[rank][if mode == GradMode::Exact { 0 } else { n }];
    let side = side_streams(&sp.group)?;
    for (rank, st) in steps.iter().enumerate() {
        let (dev, pkg, g) = (
            sp.group.device(rank),
            &sp.packages[rank].dilated,
            &grads[rank],
        );
        let mut first = first_writes(st);
        for (n, s) in st.iter().enumerate() {
            let RankPattern::Local { segment } = s.place else {
                continue;
            };
            let tail = [scale, segment as f64, s.r as f64, s.head_group as f64];
            let qkv = [
                Arg::Tensor(&q[rank]),
                Arg::Tensor(&k[rank]),
                Arg::Tensor(&v[rank]),
                Arg::Tensor(&d_o[rank]),
            ];
            if mode == GradMode::Torchscale {
                let name = entry(pkg, local_spec::BWD_DELTA, d, dtype, &[c])?;
                let mut args = qkv.to_vec();
                args.push(Arg::Tensor(delta(rank, n)));
                args.extend(scalars(&tail));
                pkg.launch_on(dev, &side[rank], name, &args)?;
            }
            let f = ("FIRST", flag(first));
            first = false;
            let mut common = qkv.to_vec();
            common.extend([Arg::Tensor(&fwd.lse[rank]), Arg::Tensor(delta(rank, n))]);
            let mut args = common.clone();
            args.extend([Arg::Tensor(&g.dk), Arg::Tensor(&g.dv)]);
            args.extend(scalars(&tail));
            pkg.launch_on(
                dev,
                &side[rank],
                entry(pkg, local_spec::BWD_DKDV, d, dtype, &[c, f])?,
                &args,
            )?;
            let mut args = common;
            args.push(Arg::Tensor(&g.dq));
            args.extend(scalars(&tail));
            pkg.launch_on(
                dev,
                &side[rank],
                entry(pkg, local_spec::BWD_DQ, d, dtype, &[c, f])?,
                &args,
            )?;
        }
    }
    let x = Bwd {
        q,
        d_o,
        fwd,
        deltas: &deltas,
        mode,
        scale,
        causal: c,
        dtype,
    };
    let summed = gathered_shares(sp, &steps, x)?;
    join(&sp.group, &side)?;
    gathered_dq_and_scatter(sp, &steps, x, &summed, &grads)?;
    Ok(grads)
}

/// What the gathered part of the backward reads.
#[derive(Clone, Copy)]
struct Bwd<'a> {
    q: &'a [DeviceTensor],
    d_o: &'a [DeviceTensor],
    fwd: &'a SpOutput,
    deltas: &'a [Vec<DeviceTensor>],
    mode: GradMode,
    scale: f64,
    causal: (&'static str, &'static str),
    dtype: DType,
}

impl Bwd<'_> {
    /// Rank's δ for the n-th launch: one per pattern in torchscale mode.
    fn delta(&self, rank: usize, n: usize) -> &DeviceTensor {
        &self.deltas[rank][if self.mode == GradMode::Exact { 0 } else { n }]
    }
}

/// The gathered patterns' shares of dK̃, dṼ on the ranks' own streams, then per segment the
/// reduce-scatter that hands each member the sum over the segment for its own rows.
fn gathered_shares(
    sp: &SequenceParallel,
    steps: &[Vec<Step>],
    x: Bwd<'_>,
) -> Result<PerRank, RuntimeError> {
    let Bwd {
        q,
        d_o,
        fwd,
        mode,
        scale,
        causal: c,
        dtype,
        ..
    } = x;
    let (b, h, d) = (q[0].shape[0], q[0].shape[1], q[0].shape[3]);
    let delta = |rank: usize, n: usize| x.delta(rank, n);
    let mut summed: PerRank = (0..steps[0].len())
        .map(|_| (0..sp.ranks()).map(|_| None).collect())
        .collect();
    for n in 0..steps[0].len() {
        let mut shares: Vec<Option<(DeviceTensor, DeviceTensor)>> =
            (0..sp.ranks()).map(|_| None).collect();
        for (rank, st) in steps.iter().enumerate() {
            let s = &st[n];
            let RankPattern::Gathered { me, .. } = s.place else {
                continue;
            };
            let (dev, pkg) = (sp.group.device(rank), &sp.packages[rank].sp);
            let (kg, vg) = fwd.gathered[s.i][rank]
                .as_ref()
                .ok_or_else(|| bad(OP, "the forward gathered nothing for this pattern".into()))?;
            let tail = [scale, s.r as f64, s.head_group as f64, me as f64];
            let qkv = [
                Arg::Tensor(&q[rank]),
                Arg::Tensor(kg),
                Arg::Tensor(vg),
                Arg::Tensor(&d_o[rank]),
            ];
            if mode == GradMode::Torchscale {
                let mut args = qkv.to_vec();
                args.push(Arg::Tensor(delta(rank, n)));
                args.extend(scalars(&tail));
                pkg.launch(dev, entry(pkg, spec::BWD_DELTA, d, dtype, &[c])?, &args)?;
            }
            let (dkg, dvg) = (
                DeviceTensor::empty(dev, dtype, &kg.shape)?,
                DeviceTensor::empty(dev, dtype, &kg.shape)?,
            );
            let mut args = qkv.to_vec();
            args.extend([
                Arg::Tensor(&fwd.lse[rank]),
                Arg::Tensor(delta(rank, n)),
                Arg::Tensor(&dkg),
                Arg::Tensor(&dvg),
            ]);
            args.extend(scalars(&tail));
            pkg.launch(dev, entry(pkg, spec::BWD_DKDV, d, dtype, &[c])?, &args)?;
            shares[rank] = Some((dkg, dvg));
        }
        let mut done: Vec<Vec<usize>> = Vec::new();
        for st in steps {
            let RankPattern::Gathered { members, rows, .. } = &st[n].place else {
                continue;
            };
            if done.contains(members) {
                continue;
            }
            done.push(members.clone());
            let (mut sk, mut sv, mut rk, mut rv) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for &m in members {
                let (dkg, dvg) = shares[m].take().expect("every member computed its share");
                let dev = sp.group.device(m);
                rk.push(DeviceTensor::empty(dev, dtype, &[b, h, *rows, d])?);
                rv.push(DeviceTensor::empty(dev, dtype, &[b, h, *rows, d])?);
                sk.push(dkg);
                sv.push(dvg);
            }
            let group = sp.segment(members);
            group.reduce_scatter_sum(&sk, &mut rk)?;
            group.reduce_scatter_sum(&sv, &mut rv)?;
            for ((&m, a), bb) in members.iter().zip(rk).zip(rv) {
                summed[n][m] = Some((a, bb));
            }
        }
    }
    Ok(summed)
}

/// After the streams joined: each gathered pattern's dQ, and its reduce-scattered dK̃, dṼ added
/// into the rank's dK, dV.
fn gathered_dq_and_scatter(
    sp: &SequenceParallel,
    steps: &[Vec<Step>],
    x: Bwd<'_>,
    summed: &PerRank,
    grads: &[AttentionGrads],
) -> Result<(), RuntimeError> {
    let Bwd {
        q,
        d_o,
        fwd,
        scale,
        causal: c,
        dtype,
        ..
    } = x;
    let d = q[0].shape[3];
    let delta = |rank: usize, n: usize| x.delta(rank, n);
    for (rank, st) in steps.iter().enumerate() {
        let (dev, pkg, g) = (sp.group.device(rank), &sp.packages[rank].sp, &grads[rank]);
        for (n, s) in st.iter().enumerate() {
            let RankPattern::Gathered { me, .. } = s.place else {
                continue;
            };
            let (kg, vg) = fwd.gathered[s.i][rank].as_ref().expect("checked above");
            let mut args = vec![
                Arg::Tensor(&q[rank]),
                Arg::Tensor(kg),
                Arg::Tensor(vg),
                Arg::Tensor(&d_o[rank]),
            ];
            args.extend([
                Arg::Tensor(&fwd.lse[rank]),
                Arg::Tensor(delta(rank, n)),
                Arg::Tensor(&g.dq),
            ]);
            args.extend(scalars(&[
                scale,
                s.r as f64,
                s.head_group as f64,
                me as f64,
            ]));
            pkg.launch(
                dev,
                entry(pkg, spec::BWD_DQ, d, dtype, &[c, ("FIRST", "false")])?,
                &args,
            )?;
            let (dks, dvs) = summed[n][rank].as_ref().expect("reduce-scattered above");
            let mut args = vec![
                Arg::Tensor(dks),
                Arg::Tensor(dvs),
                Arg::Tensor(&g.dk),
                Arg::Tensor(&g.dv),
            ];
            args.extend(scalars(&[s.r as f64, s.head_group as f64]));
            pkg.launch(
                dev,
                entry(pkg, spec::SCATTER_ADD, d, dtype, &[("FIRST", "false")])?,
                &args,
            )?;
        }
    }
    Ok(())
}
