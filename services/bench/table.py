"""A readable table of the bench figures."""

from __future__ import annotations

from typing import Any


def render(result: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []

    def add(section: str, figures: dict[str, Any]) -> None:
        for name, fig in figures.items():
            if isinstance(fig, dict) and "median" in fig:
                spread = f"(min {fig['min']:,}, max {fig['max']:,}, n={fig['runs']})"
                rows.append((f"{section}.{name}", f"{fig['median']:>12,} {fig['unit']}  {spread}"))
            elif (
                isinstance(fig, dict)
                and fig
                and all(isinstance(v, dict) and "median" in v for v in fig.values())
            ):
                add(f"{section}.{name}", fig)
            else:
                rows.append((f"{section}.{name}", str(fig)))

    sections = (
        "baselines", "event_store", "simulated_network", "end_to_end", "latency_at_half_saturation",
        "latency_at_quarter_saturation", "latency_at_low_load", "latency_floor_ms", "memory",
        "cost_per_intent",
        "ratios", "scale",
    )  # fmt: skip
    for section in sections:
        if section == "scale" and section in result:
            # Plain figures, nested by what they measure: one row per leaf.
            rows.extend(_leaves("scale", result[section]))
        elif section in result:
            add(section, result[section])
    width = max(len(name) for name, _ in rows)
    machine = result["machine"]
    steal = machine.get("steal_pct_during_run")
    lines = [
        "",
        f"Corridor bench, {machine['date']}, {machine['cpus']} CPUs"
        + (f", {steal} % of CPU time stolen by the hypervisor" if steal is not None else ""),
    ]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    lines.append("")
    lines += [
        f"target {name:<40} {'met' if t['met'] else 'NOT met'}: {t['value']} (target {t['target']})"
        for name, t in result.get("targets", {}).items()
    ]
    return "\n".join(lines) + "\n"


def _leaves(prefix: str, figures: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, fig in figures.items():
        if isinstance(fig, dict):
            out += _leaves(f"{prefix}.{name}", fig)
        else:
            out.append((f"{prefix}.{name}", str(fig)))
    return out
