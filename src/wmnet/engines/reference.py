"""The dense reference engine: the step of docs/model.md, line by line, on N×N matrices.

It is the oracle every faster engine is tested against. Memory and time grow as N², so it is
for small networks (a few thousand neurons); use the sparse engine for anything larger.
"""

from __future__ import annotations

import numpy as np
import torch

from wmnet import model
from wmnet.connectivity import SynapseState
from wmnet.dynamics import NeuronState, advance, drift, hebbian_factor, released
from wmnet.engines.base import Engine, channel_efficacies, neuron_tensors
from wmnet.model import Scales
from wmnet.network import Network

EE = model.PLASTIC.name


class ReferenceEngine(Engine):
    name = "reference"
    devices = ("cpu", "cuda")

    def __init__(self, net: Network, neurons: NeuronState, synapses: SynapseState, keep_switch_events: bool = False):
        super().__init__(net, keep_switch_events)
        cfg, conn = net.config, net.connectivity
        self.neurons = neurons
        n_e, dtype, dev = net.n_E, net.dtype, net.device
        self.J_slow, self.J_fast = conn.to_dense(cfg, dtype, synapses, channel_efficacies(cfg, self.scales))
        post, pre = conn.ee_indices()
        self._ee_post, self._ee_pre = post, pre
        self.ee_exists = torch.zeros(n_e, n_e, dtype=dtype, device=dev)  # W: E→E mask
        self.ee_exists[post, pre] = 1
        self.ee_slow = torch.zeros(n_e, n_e, dtype=torch.bool, device=dev)
        self.ee_slow[post, pre] = conn.projections[EE].is_slow()
        self.L = torch.zeros(n_e, n_e, dtype=dtype, device=dev)
        self.L[post, pre] = synapses.L.to(dtype)
        self.pot = torch.zeros(n_e, n_e, dtype=torch.bool, device=dev)
        self.pot[post, pre] = synapses.potentiated.bool()
        self._set_switch_values()

    def _set_switch_values(self) -> None:
        """The values a switching E→E synapse takes: (J_d, J_p) of its channel, scaled."""
        slow, fast = channel_efficacies(self.cfg, self.scales)[EE]
        dev, dtype = self.J_slow.device, self.J_slow.dtype
        self.J_d_slow, self.J_p_slow, self.J_d_fast, self.J_p_fast = (
            torch.tensor(v, dtype=dtype, device=dev) for v in (*slow, *fast)
        )

    def set_scales(self, scales: Scales) -> None:
        """Receptor scales from the next step on: the dense matrices are rebuilt with them."""
        self.scales = dict(scales)
        self.J_slow, self.J_fast = self.net.connectivity.to_dense(
            self.cfg, self.J_slow.dtype, self.synapses(), channel_efficacies(self.cfg, self.scales)
        )
        self._set_switch_values()

    def step(self, i_ext: torch.Tensor) -> torch.Tensor:
        cfg, p, st = self.cfg, self.net.params, self.neurons
        sigma, s = released(st, p)  # 1, 2
        syn_slow = self.J_slow @ s  # 3: Σ_j J^slow_ij s_j
        syn_fast = self.J_fast @ s  # 4
        new = advance(st, sigma, s, syn_slow, syn_fast, i_ext, p)  # 3–7
        if cfg.plasticity.enabled:
            self._plasticity(st.v, sigma)  # 8, 9 with values at t_k
        self.neurons = new
        self.k += 1
        return sigma.bool()

    def _plasticity(self, v: torch.Tensor, sigma: torch.Tensor) -> None:
        cfg, n_e = self.cfg, self.net.n_E
        p = self.net.params
        L = self.L
        f = hebbian_factor(v[:n_e], p.theta[:n_e], p.v_reset[:n_e], cfg)  # 8, per post
        hebb = f[:, None] * sigma[None, :n_e]  # post × pre
        L_new = L + self.net.params.dt * self.ee_exists * (drift(L, cfg) + hebb)
        if cfg.plasticity.bounds is not None:
            L_new = L_new.clamp(*cfg.plasticity.bounds)
        thx = cfg.plasticity.theta_X
        exists = self.ee_exists.bool()
        up = (L <= thx) & (thx < L_new) & exists  # 9
        down = (L >= thx) & (thx > L_new) & exists
        new_pot = (self.pot | up) & ~down
        changed = new_pot != self.pot
        if changed.any():
            self._log(changed, new_pot)
            js, jf = self.J_slow[:n_e, :n_e], self.J_fast[:n_e, :n_e]
            m = changed & self.ee_slow
            js[m] = torch.where(new_pot[m], self.J_p_slow, self.J_d_slow)
            m = changed & ~self.ee_slow
            jf[m] = torch.where(new_pot[m], self.J_p_fast, self.J_d_fast)
        self.pot, self.L = new_pot, L_new

    def _log(self, changed: torch.Tensor, new_pot: torch.Tensor) -> None:
        post, pre = changed.nonzero(as_tuple=True)
        direction = torch.where(new_pot[post, pre], 1, -1)
        ev = torch.stack([torch.full_like(post, self.k), pre, post, direction], dim=1)
        self.switches.add(ev.cpu().numpy().astype(np.int64))

    def synapses(self) -> SynapseState:
        post, pre = self._ee_post, self._ee_pre
        return SynapseState(self.pot[post, pre].to(torch.uint8), self.L[post, pre].clone())

    def stored_L(self) -> torch.Tensor:
        return self.L  # dense N_E × N_E: 0 where no synapse exists

    def _buffers(self) -> dict[str, torch.Tensor]:
        # J_slow/J_fast change with every switch, so they are state here, not parameters.
        return {
            **neuron_tensors(self.neurons),
            "J_slow": self.J_slow,
            "J_fast": self.J_fast,
            "L": self.L,
            "potentiated": self.pot,
        }
