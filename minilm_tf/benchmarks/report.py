"""A benchmark report as the table tools/benchmark.py prints."""

PHASE_TITLES = {
    "step": "(a) distillation step",
    "teacher": "(b) teacher forward",
    "student": "(c) student step",
    "compared": "(a2) step, compared",
}


def format_table(report: dict) -> str:
    """One header line, then per precision a row per measurement and the
    overhead, comparison, roofline and profile lines."""
    cfg = report["config"]
    lines = [
        f"teacher={cfg['teacher']} student={cfg['student']} objective={cfg['objective']}"
        f"{' (R=%d)' % cfg['num_relation_heads'] if cfg['objective'] == 'minilmv2' else ''} "
        f"batch={cfg['batch_size']}x{cfg['seq_len']} real_tokens={cfg['real_tokens_per_step']} "
        f"threads={cfg['threads']}/{cfg['inter_op_threads']} jit={cfg['jit_compile']} "
        f"steps={cfg['steps']} (+{cfg['warmup_steps']} warm-up)",
        f"{'precision':<15} {'measurement':<24} {'median ms':>10} {'min ms':>9} {'max ms':>9} "
        f"{'tokens/s':>10} {'cpu ms':>9}",
    ]
    for r in report["results"]:
        for name in (n for n in PHASE_TITLES if n in r):
            s = r[name]
            lines.append(f"{r['precision']:<15} {PHASE_TITLES[name]:<24} {s['median_ms']:>10.1f} "
                         f"{s['min_ms']:>9.1f} {s['max_ms']:>9.1f} {s['tokens_per_s']:>10.0f} "
                         f"{s['cpu_median_ms']:>9.1f}")
        lines.append(f"{r['precision']:<15} overhead a/(b+c) = {r['overhead_ratio']:.3f} "
                     f"({r['overhead_ms']:+.1f} ms; by CPU time {r['overhead_ratio_cpu']:.3f}); "
                     f"peak RSS {r['memory']['peak_rss_mb']:.0f} MB; "
                     f"loss {r['loss_first']:.4f} -> {r['loss_last']:.4f}")
        if "compared" in r:
            other = r["compared"]
            lines.append(f"{'':<15} (a2) {other['objective']}, fast paths "
                         f"{'on' if other['fast_paths'] else 'off'}, runs at "
                         f"{100 * other['tokens_per_s_ratio']:.1f}% of (a)'s tokens/s "
                         f"({100 * other['tokens_per_s_ratio_cpu']:.1f}% by CPU time)")
        mm = r["matmuls"]
        lines.append(f"{'':<15} jit={r['jit_compile']}; fast paths "
                     f"{'on' if r['fast_paths'] else 'off'}; relation loss {r['relation_loss']}; "
                     f"matmuls {mm['step_flops'] / 1e9:.1f} GFLOP/step "
                     f"= {mm['achieved_gflops']:.0f} GFLOP/s, {100 * mm['fraction_of_peak']:.0f}% "
                     f"of this process's {mm['dtype']} matmul peak {mm['peak_gflops']:.0f} GFLOP/s")
        prof = r.get("profile")
        if prof and isinstance(prof.get("by_part"), list):
            parts = ", ".join(f"{p['part']} {p['ms_per_step']:.1f}" for p in prof["by_part"])
            lines.append(f"{'':<15} profile ms/step: {parts}")
            ops = ", ".join(f"{o['op']} {o['percent']:.0f}%" for o in prof["top_op_types"][:8])
            lines.append(f"{'':<15} top op types: {ops}")
    return "\n".join(lines)
