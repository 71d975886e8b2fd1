"""Train models/load_shaving.onnx on the simulator: `python -m models.train` (11 minutes on 2 idle cores).

1. Targets: per building, 80% of its baseline peak in the same scenario under weather seed + 1000.
2. References on every training episode (scenario x weather seed, a 3-day weekday window): the baseline
   and the rule-based limiter, whose features are logged.
3. Imitation: the MLP fitted to the limiter's decisions on those features (least squares, Adam), then
   once more on the features the fitted model itself visits, labelled by the limiter (DAgger).
4. Cross-entropy search on the linear correction (28 numbers) against the objective, per building: the
   bench's cost KPI for a week at the window's pace (TOU energy + one month's demand charge), plus
   penalties on discomfort and on HVAC energy above the lower of the baseline's and the limiter's (so
   that neither comfort nor energy pays for a lower peak); two seeds per generation in turn; the best so
   far is kept.
5. The correction is kept only if it beats the plain imitation over all training episodes together.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import multiprocessing.pool
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_agent.control.features import Features
from edge_agent.control.rules import RuleBasedPolicy
from models.episodes import Controller, Episode, Outcome, run, targets_of
from models.policy_net import FEATURES, LOW, SPAN, WIDTH, Array, Weights, hidden, raw_inputs, sigmoid, to_onnx

OUTPUT = Path(__file__).with_name("load_shaving.onnx")
VERSION = "load_shaving 1.0"
SCENARIOS = ("summer", "winter", "shoulder")
TRAIN_SEEDS = tuple(range(1, 9))
DAGGER_SEEDS = (1, 2, 3, 4)
DAYS = 3  # Monday to Wednesday, after the study's two days of warm-up
PENALTY_KRW_PER_KH = 5e6  # discomfort above the references'
PENALTY_KRW_PER_KWH = 1500.0  # HVAC energy above the references', in the window (about 10x its price)
HIDDEN = 32
FIT_STEPS, BATCH, LEARNING_RATE = 4000, 2048, 3e-3
GENERATIONS, POPULATION, ELITES, SIGMA0, SIGMA_MIN = 8, 8, 3, 0.1, 0.01
SEEDS_PER_GENERATION = 2
CORRECTED_ROWS = (len(FEATURES), FEATURES.index("open"), FEATURES.index("outdoor_temperature"))
RNG_SEED = 20260806


def config() -> dict[str, object]:
    return {
        "scenarios": SCENARIOS,
        "train_seeds": TRAIN_SEEDS,
        "dagger_seeds": DAGGER_SEEDS,
        "days": DAYS,
        "target": "0.8 x baseline peak, weather seed + 1000",
        "objective": f"energy_krw x 7 d / window + demand_krw + {PENALTY_KRW_PER_KH:g} x K.h tdis and "
        f"{PENALTY_KRW_PER_KWH:g} x HVAC kWh above min(baseline, rules), per building",
        "hidden": HIDDEN,
        "fit": [FIT_STEPS, BATCH, LEARNING_RATE],
        "cem": [GENERATIONS, POPULATION, ELITES, SIGMA0, SIGMA_MIN, SEEDS_PER_GENERATION, CORRECTED_ROWS],
        "rng_seed": RNG_SEED,
    }


def rule_labels(x: Array) -> Array:
    """The limiter's decisions on logged features, as shares of each knob's range."""
    rules = RuleBasedPolicy()
    rows = [list(rules.decide(Features(*map(float, row))).values().values()) for row in x]
    labels: Array = (np.array(rows) - LOW) / SPAN
    return labels


def fit(x: Array, t: Array, start: Weights | None, rng: np.random.Generator) -> tuple[Weights, float]:
    """Least squares on the sigmoid outputs, Adam on minibatches; returns the weights and the final MSE."""
    raw = raw_inputs(x)
    if start is None:
        mean, sd = raw.mean(axis=0), raw.std(axis=0)
        scale = np.where(sd > 1e-6, 1.0 / np.maximum(sd, 1e-6), 1.0)
        share = np.clip(t.mean(axis=0), 0.02, 0.98)
        start = Weights(
            mean, scale,
            rng.normal(0.0, np.sqrt(2.0 / WIDTH), (WIDTH, HIDDEN)), np.zeros(HIDDEN),
            rng.normal(0.0, np.sqrt(1.0 / HIDDEN), (HIDDEN, 7)), np.log(share / (1 - share)),
            np.zeros((WIDTH, 7)), np.zeros(7),
        )  # fmt: skip
    e_all = (raw - start.mean) * start.scale
    params = [start.w1.copy(), start.b1.copy(), start.w2.copy(), start.b2.copy()]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    for step in range(1, FIT_STEPS + 1):
        pick = rng.integers(0, len(x), BATCH)
        e, target = e_all[pick], t[pick]
        w1, b1, w2, b2 = params
        z1 = e @ w1 + b1
        h = np.maximum(0.0, z1)
        p = sigmoid(h @ w2 + b2)
        dz2 = 2 * (p - target) / target.size * p * (1 - p)
        dz1 = (dz2 @ w2.T) * (z1 > 0)
        grads = [e.T @ dz1, dz1.sum(axis=0), h.T @ dz2, dz2.sum(axis=0)]
        rate = LEARNING_RATE * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / FIT_STEPS)))
        for i, grad in enumerate(grads):
            m, v = moments[i]
            m[:] = 0.9 * m + 0.1 * grad
            v[:] = 0.999 * v + 0.001 * grad**2
            params[i] -= rate * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    w1, b1, w2, b2 = params
    weights = Weights(start.mean, start.scale, w1, b1, w2, b2, start.v, start.c)
    p = sigmoid(hidden(weights, e_all) @ weights.w2 + weights.b2)
    return weights, float(np.mean((p - t) ** 2))


def correction(weights: Weights, theta: Array) -> Weights:
    v = np.zeros((WIDTH, 7))
    v[list(CORRECTED_ROWS)] = theta[7:].reshape(len(CORRECTED_ROWS), 7)
    return weights.with_correction(v, theta[:7].copy())


Limits = dict[Episode, dict[str, tuple[float, float]]]  # per building: tdis K.h, HVAC kWh not to exceed


def objective(episodes: list[Episode], outcomes: list[Outcome], limits: Limits) -> float:
    """Costs plus penalties, summed over episodes and buildings, KRW."""
    total = 0.0
    for ep, outcome in zip(episodes, outcomes, strict=True):
        for building, cost in outcome.cost_krw.items():
            tdis, hvac = limits[ep][building]
            total += cost + PENALTY_KRW_PER_KH * max(0.0, outcome.tdis_kh[building] - tdis)
            total += PENALTY_KRW_PER_KWH * max(0.0, outcome.hvac_kwh[building] - hvac)
    return total


def logged_rows(outcomes: list[Outcome]) -> Array:
    rows: Array = np.concatenate([o.features for o in outcomes if o.features is not None])[::2]
    return rows.astype(np.float64)


class Trainer:
    def __init__(self, pool: multiprocessing.pool.Pool) -> None:
        self.pool = pool
        self.runs = 0
        self.started = time.monotonic()
        self.rng = np.random.default_rng(RNG_SEED)
        self.episodes: list[Episode] = []
        self.limits: Limits = {}

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.0f} s] {text}", flush=True)

    def run(self, jobs: Sequence[tuple[Episode, Controller, bool]]) -> list[Outcome]:
        self.runs += len(jobs)
        return self.pool.map(run, jobs, chunksize=1)

    def score(self, models: list[bytes], episodes: list[Episode]) -> list[float]:
        outcomes = self.run([(ep, model, False) for model in models for ep in episodes])
        n = len(episodes)
        return [objective(episodes, outcomes[i * n : (i + 1) * n], self.limits) for i in range(len(models))]

    def references(self) -> list[Outcome]:
        """Targets, then the baseline and the limiter on every episode; the limiter's runs, logged."""
        keys = [(s, seed) for s in SCENARIOS for seed in TRAIN_SEEDS]
        targets = dict(zip(keys, self.pool.map(targets_of, keys), strict=True))
        self.episodes = [Episode(s, seed, DAYS, targets[(s, seed)]) for s, seed in keys]
        self.say(f"targets for {len(keys)} scenario x seed pairs (0.8 x baseline peak under seed + 1000)")
        baseline = self.run([(ep, "baseline", False) for ep in self.episodes])
        rules = self.run([(ep, "rules", True) for ep in self.episodes])
        self.limits = {
            ep: {
                b: (min(base.tdis_kh[b], rule.tdis_kh[b]), min(base.hvac_kwh[b], rule.hvac_kwh[b]))
                for b in base.tdis_kh
            }
            for ep, base, rule in zip(self.episodes, baseline, rules, strict=True)
        }
        return rules

    def imitate(self, rules: list[Outcome]) -> tuple[Weights, str]:
        """The MLP fitted to the limiter, with one DAgger round; and the fingerprint of its data."""
        x = logged_rows(rules)
        weights, mse = fit(x, rule_labels(x), None, self.rng)
        self.say(f"imitation: MLP 24-{HIDDEN}-7 fitted to the limiter on {len(x)} rows, MSE {mse:.4f}")
        model = to_onnx(weights, VERSION, "-", "")
        visited = self.run([(ep, model, True) for ep in self.episodes if ep.seed in DAGGER_SEEDS])
        more = logged_rows(visited)
        x = np.concatenate([x, more])
        weights, mse = fit(x, rule_labels(x), weights, self.rng)
        self.say(f"DAgger: +{len(more)} rows the model visited, labelled by the limiter; MSE {mse:.4f}")
        return weights, hashlib.sha256(x.astype(np.float32).tobytes()).hexdigest()

    def search(self, weights: Weights) -> Array:
        """Cross-entropy search on the correction; the best so far is re-scored on each new batch."""
        dim = 7 * (1 + len(CORRECTED_ROWS))
        mean, sigma, best = np.zeros(dim), np.full(dim, SIGMA0), np.zeros(dim)
        for generation in range(GENERATIONS):
            first = (generation * SEEDS_PER_GENERATION) % len(TRAIN_SEEDS)
            seeds = TRAIN_SEEDS[first : first + SEEDS_PER_GENERATION]
            thetas = [best] + [mean + sigma * self.rng.standard_normal(dim) for _ in range(POPULATION)]
            models = [to_onnx(correction(weights, th), VERSION, "-", "") for th in thetas]
            scores = self.score(models, [ep for ep in self.episodes if ep.seed in seeds])
            order = np.argsort(scores)
            elite = np.array([thetas[i] for i in order[:ELITES]])
            mean = elite.mean(axis=0)
            sigma = np.maximum(SIGMA_MIN, np.sqrt(0.5 * sigma**2 + 0.5 * elite.var(axis=0)))
            best = thetas[order[0]]
            self.say(
                f"CEM generation {generation + 1}/{GENERATIONS}, seeds {list(seeds)}: best so far "
                f"{scores[0] / 1e6:.3f}M KRW, best now {scores[order[0]] / 1e6:.3f}M"
                + (" (new best)" if order[0] != 0 else "")
            )
        return best


def main() -> None:
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        trainer = Trainer(pool)
        rules = trainer.references()
        weights, data_fingerprint = trainer.imitate(rules)
        tuned = correction(weights, trainer.search(weights))
        plain = to_onnx(weights, VERSION, "-", "")
        final = trainer.score([plain, to_onnx(tuned, VERSION, "-", "")], trainer.episodes)
        chosen = tuned if final[1] < final[0] else weights
        trainer.say(
            f"all {len(trainer.episodes)} training episodes: rules "
            f"{objective(trainer.episodes, rules, trainer.limits) / 1e6:.3f}M, imitation "
            f"{final[0] / 1e6:.3f}M, tuned {final[1] / 1e6:.3f}M KRW -> shipping the "
            f"{'tuned' if chosen is tuned else 'imitation'} model"
        )
    settings = json.dumps(config(), sort_keys=True)
    fingerprint = hashlib.sha256(f"{settings}\n{data_fingerprint}".encode()).hexdigest()
    description = f"Load shaving policy for edge-agent, trained by models/train.py: {settings}"
    OUTPUT.write_bytes(to_onnx(chosen, VERSION, fingerprint, description))
    trainer.say(f"{trainer.runs} simulated episodes; wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")
    trainer.say(f"training fingerprint {fingerprint}")


if __name__ == "__main__":
    main()
