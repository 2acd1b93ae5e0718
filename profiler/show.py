"""Printing a profile as rich tables (``simscale profile show``)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from simscale.profiler.schema import ConfigProfile, ModelProfile, Profile, ServiceTimeFit


def _fmt_ms(ms: float | None) -> str:
    """Milliseconds with about 4 significant digits (``-`` when not measured)."""
    if ms is None:
        return "-"
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.4f}"


def _fmt_rate(per_s: float) -> str:
    return f"{per_s:,.0f}" if per_s >= 100 else f"{per_s:.1f}"


def _fmt_params(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k"
    return str(n)


def _fmt_mb(mb: float) -> str:
    return f"{mb:,.1f}" if mb >= 1 else f"{mb:.4f}"


def _fmt_quality(quality: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in quality.items()) or "-"


def describe_noise(fit: ServiceTimeFit) -> str:
    """``lognorm(0.21, 0.43, 0.57) KS 0.031`` (+ the spread range when it depends on b)."""
    params = ", ".join(f"{p:.3g}" for p in fit.noise.params)
    text = f"{fit.noise.dist}({params})"
    if fit.noise.ks_statistic is not None:
        text += f" KS {fit.noise.ks_statistic:.3f}"
    if fit.noise_scale:
        scales = [s for _, s in fit.noise_scale]
        text += f"; spread x{min(scales):.2f}..x{max(scales):.2f} over b"
    return text


def describe_fit(fit: ServiceTimeFit) -> str:
    """One line: the median line, the noise, r2 and the worst relative error."""
    knots = f" (+{len(fit.knots)} knots)" if fit.knots else ""
    return (
        f"t50(b) = {fit.alpha_ms:.4g} + {fit.beta_ms:.4g}*b ms{knots}; noise "
        f"{describe_noise(fit)}; r2 {fit.r2:.4f}; max rel. error {fit.max_rel_error:.1%}"
    )


def models_table(profile: Profile) -> Table:
    """Models: what they are, quality, parameters, size, preprocessing and cold start."""
    table = Table(title="Models", title_justify="left")
    for col, just in [
        ("model", "left"), ("framework", "left"), ("quality", "left"), ("params", "right"),
        ("size MB", "right"), ("preproc p50 ms/item", "right"), ("cold start p50 / p95 s", "right"),
    ]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for m in profile.models.values():
        cold = "; ".join(f"{c.device} {c.p50_s:.2f} / {c.p95_s:.2f}" for c in m.cold_start)
        pre = _fmt_ms(m.preprocessing.p50_ms) if m.preprocessing else "-"
        table.add_row(
            m.name, m.framework, _fmt_quality(m.quality), _fmt_params(m.n_parameters),
            _fmt_mb(m.model_size_mb), pre, cold or "-",
        )
    return table


def describe_serving(cfg: ConfigProfile) -> str:
    """One line: what a router saw of a serving replica, and the overhead the simulator adds."""
    sv = cfg.serving
    if sv is None:
        return "serving overhead: not measured (an older profile): none simulated"
    text = (
        f"serving: batch of 1 after {sv.gap_ms:.0f} ms idle: round trip p50 "
        f"{_fmt_ms(sv.roundtrip_ms_p50)} / p95 {_fmt_ms(sv.roundtrip_ms_p95)} ms (predict "
        f"{_fmt_ms(sv.predict_ms_p50)} ms, {sv.batches} batches)"
    )
    if sv.idle_roundtrip_ms_p50:
        gaps = "/".join(f"{g:g}" for g, _ in sv.idle_roundtrip_ms_p50)
        rts = "/".join(_fmt_ms(r) for _, r in sv.idle_roundtrip_ms_p50)
        text += f"; after {gaps} ms idle: {rts} ms"
    return text + f"; simulated batches: {describe_serving_change(cfg)}"


def describe_serving_change(cfg: ConfigProfile) -> str:
    """What serving changes in the simulated batch times: ``+0.62 ms``, ``x0.954`` or ``-``."""
    sv = cfg.serving
    if sv is None:
        return "-"
    scale = f"x{cfg.fit_scale:.3f} " if cfg.fit_scale < 1.0 else ""
    if sv.idle_overhead_ms:
        lo, hi = min(o for _, o in sv.idle_overhead_ms), max(o for _, o in sv.idle_overhead_ms)
        return f"{scale}+{lo:.2f}..{hi:.2f} ms"
    return f"{scale}+{cfg.overhead_ms:.2f} ms"


def describe_colocation(cfg: ConfigProfile) -> str:
    """One line: the co-location slowdown per number of other batches in service on the host
    (a line saying so when not measured), with a note when a factor is below 1."""
    co = cfg.colocation
    if co is None:
        return "co-location: not measured (no slowdown simulated)"
    factors = " ".join(f"{n}:x{f:.3f}" for n, f in enumerate(co.slowdown_by_others))
    text = (f"co-location (b={co.batch_size}, {co.host_cores}-core host): slowdown by other "
            f"batches in service {factors}; alone p50 {_fmt_ms(co.p50_ms[0])} ms")
    if any(f < 1.0 for f in co.slowdown_by_others):
        text += " (a factor below 1 is stored as measured: noise or a faster clock)"
    return text


def config_table(model: ModelProfile, cfg: ConfigProfile) -> Table:
    """One (model, device, threads): per batch size latency percentiles, throughput, memory."""
    plural = "s" if cfg.threads != 1 else ""
    table = Table(
        title=f"{model.name} on {cfg.device}, {cfg.threads} thread{plural}",
        caption=describe_fit(cfg.fit) + "\n" + describe_serving(cfg)
        + ("\n" + describe_colocation(cfg) if cfg.colocation is not None else ""),
        title_justify="left",
        caption_justify="left",
    )
    rounds = any(b.round_p50_ms for b in cfg.batches)
    for col in ("batch", "n", "p50 ms", *(("rounds p50 ms",) if rounds else ()), "p95 ms",
                "p99 ms", "mean ± std ms", "items/s", "peak MB"):
        table.add_column(col, justify="right")
    for b in cfg.batches:
        mem = f"{b.peak_memory_mb:,.0f}" if b.peak_memory_mb is not None else "-"
        table.add_row(
            str(b.batch_size), str(len(b.samples_ms)), _fmt_ms(b.p50_ms),
            *((describe_rounds(b.round_p50_ms),) if rounds else ()), _fmt_ms(b.p95_ms),
            _fmt_ms(b.p99_ms), f"{_fmt_ms(b.mean_ms)} ± {_fmt_ms(b.std_ms)}",
            _fmt_rate(b.items_per_s), mem,
        )
    return table


def describe_rounds(round_p50_ms: list[float] | None) -> str:
    """The spread of a batch size's timing rounds: ``75.2..83.4 (6)``: the smallest and the
    largest round median (ms) and the number of rounds (``-`` without rounds)."""
    if not round_p50_ms:
        return "-"
    return f"{_fmt_ms(min(round_p50_ms))}..{_fmt_ms(max(round_p50_ms))} ({len(round_p50_ms)})"


def summary_table(profile: Profile) -> Table:
    """One row per (model, device, threads): the headline numbers and the fit."""
    table = Table(title="Profile summary", title_justify="left")
    for col, just in [
        ("model", "left"), ("dev/thr", "left"), ("p50 b=1 ms", "right"),
        ("best items/s", "right"), ("t50(b) ms", "left"), ("noise", "left"),
        ("max err", "right"), ("serving", "right"), ("cold p50 s", "right"),
        ("peak MB", "right"),
    ]:
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for m in profile.models.values():
        for cfg in m.configs:
            first = cfg.batches[0]
            best = max(cfg.batches, key=lambda b: b.items_per_s)
            cold = next((c for c in m.cold_start if c.device == cfg.device), None)
            peaks = [b.peak_memory_mb for b in cfg.batches if b.peak_memory_mb is not None]
            p50 = _fmt_ms(first.p50_ms)
            if first.batch_size != 1:
                p50 += f" (b={first.batch_size})"
            table.add_row(
                m.name, f"{cfg.device}/{cfg.threads}", p50,
                f"{_fmt_rate(best.items_per_s)} b={best.batch_size}",
                f"{cfg.fit.alpha_ms:.3g} + {cfg.fit.beta_ms:.3g}b"
                + (" +knots" if cfg.fit.knots else ""),
                cfg.fit.noise.dist + (" s(b)" if cfg.fit.noise_scale else ""),
                f"{cfg.fit.max_rel_error:.1%}",
                describe_serving_change(cfg),
                f"{cold.p50_s:.2f}" if cold else "-",
                f"{max(peaks):,.0f}" if peaks else "-",
            )
    return table


def contention_note(profile: Profile) -> str | None:
    """A warning when other processes held the CPU for more than 5 % of some configuration's
    timed calls (the run-queue wait the profiler took out; see ``settings.timing``)."""
    timing = profile.settings.get("timing") or {}
    shares = {
        k: v.get("wait_share_of_wall_time", 0.0)
        for k, v in (timing.get("contention") or {}).items()
        if isinstance(v, dict)
    }
    busy = {k: v for k, v in shares.items() if v > 0.05}
    if not busy:
        return None
    worst = ", ".join(f"{k} {v:.0%}" for k, v in sorted(busy.items(), key=lambda kv: -kv[1]))
    return (
        "note: other processes held the CPU during the timing (share of wall time taken out: "
        f"{worst}); measure on a quiet machine for a trustworthy profile"
    )


#: a back-to-back predict in the serving replica that differs from the fit's median of one
#: item by more than this share means the machine's speed changed between the two measurements
SPEED_CHANGE_LIMIT = 0.10
#: only models this slow are checked (ms per item): below, a process's own costs dominate
SPEED_CHECK_MIN_MS = 10.0


def speed_note(profile: Profile) -> str | None:
    """A warning when, for a model slower than :data:`SPEED_CHECK_MIN_MS`, the serving
    replica's reference predict (its tight-loop one, or back to back in older profiles;
    measured minutes after the timing phase) differs from
    the fit's median of one item by more than :data:`SPEED_CHANGE_LIMIT`: the machine's speed
    changed while profiling, and every simulation inherits that uncertainty."""
    off = []
    for m in profile.models.values():
        for cfg in m.configs:
            sv = cfg.serving
            if sv is None or sv.reference_predict_ms_p50 is None:
                continue
            ref = sv.reference_predict_ms_p50
            t50 = float(profile.service_model(m.name, cfg.device, cfg.threads,
                                              serving=False).median_s(1)) * 1000.0
            ratio = ref / t50 - 1.0 if t50 > 0 else 0.0
            if t50 >= SPEED_CHECK_MIN_MS and abs(ratio) > SPEED_CHANGE_LIMIT:
                where = "in a tight loop" if sv.loop_predict_ms_p50 is not None else "back to back"
                off.append(f"{m.name}/{cfg.device}/{cfg.threads} {t50:.1f} ms in the timing "
                           f"loop, {ref:.1f} ms {where} in a serving replica ({ratio:+.0%})")
    if not off:
        return None
    return ("note: the machine's speed changed while profiling: " + "; ".join(off)
            + "; simulations inherit that uncertainty: measure again on a quiet machine")


def rounds_note(profile: Profile) -> str | None:
    """A warning when, for a batch slower than :data:`SPEED_CHECK_MIN_MS`, the largest median
    of a timing round exceeds the smallest by more than :data:`SPEED_CHANGE_LIMIT`: the
    machine's speed changed during the timing (the profile keeps the median of the rounds)."""
    off = []
    for m in profile.models.values():
        for cfg in m.configs:
            for b in cfg.batches:
                r = b.round_p50_ms
                if not r or b.p50_ms < SPEED_CHECK_MIN_MS or min(r) <= 0:
                    continue
                spread = max(r) / min(r) - 1.0
                if spread > SPEED_CHANGE_LIMIT:
                    off.append((spread, f"{m.name}/{cfg.device}/{cfg.threads} b={b.batch_size} "
                                        f"{describe_rounds(r)} ms (+{spread:.0%})"))
    if not off:
        return None
    worst = [text for _, text in sorted(off, reverse=True)[:3]]
    more = f" and {len(off) - 3} more" if len(off) > 3 else ""
    return ("note: the machine's speed changed during the timing rounds (round medians "
            + "; ".join(worst) + more + "); the profile keeps the median of the rounds")


def profile_notes(profile: Profile) -> list[str]:
    """The warnings about how ``profile`` was measured (contention, a speed change)."""
    return [n for n in (contention_note(profile), speed_note(profile), rounds_note(profile))
            if n]


def show_profile(profile: Profile, console: Any = None) -> None:
    """Print ``profile`` as rich tables: machine, models, one table per configuration."""
    if console is None:
        from simscale.console import make_console

        console = make_console()
    m = profile.machine
    libs = ", ".join(f"{k} {v}" for k, v in m.libraries.items())
    source = f" ({profile.source})" if profile.source else ""
    console.print(f"[bold]Profile[/]{source} {'[quick] ' if profile.quick else ''}"
                  f"measured {profile.created_at}")
    console.print(
        f"Machine: {m.cpu_model}, {m.cores} cores, {m.memory_mb / 1024:.1f} GiB"
        f"{', GPU ' + m.gpu if m.gpu else ''}; {m.platform}; {m.python}"
    )
    if libs:
        console.print(f"Libraries: {libs}")
    for note in profile_notes(profile):
        console.print(f"[yellow]{note}[/]")
    console.print(models_table(profile))
    for model in profile.models.values():
        for cfg in model.configs:
            console.print(config_table(model, cfg))
