"""wmnet: fast simulation of spiking working-memory networks with plastic E→E synapses.

    from wmnet import load_config, Network, Simulation
    net = Network.build(load_config("configs/seed.yaml"))
    result = Simulation(net).run(duration=1000.0, out="runs/demo")
"""

from wmnet.config import Config, load_config
from wmnet.connectivity import Connectivity, SynapseState
from wmnet.dynamics import NeuronState
from wmnet.errors import WmnetError
from wmnet.network import Network
from wmnet.simulation import RunResult, Simulation

__all__ = ["Config", "Connectivity", "Network", "NeuronState", "RunResult", "Simulation", "SynapseState",
           "WmnetError", "load_config"]
