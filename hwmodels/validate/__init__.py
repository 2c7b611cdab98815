"""End-to-end validation of the simulator against a real engine on a GPU and published results.

    python -m hwmodels.validate window --trace PATH --start I --requests N --name NAME --out FILE  # CPU
    python -m hwmodels.validate run --trace FILE [--trace FILE] [--loads 0.3 0.6 0.85] --out DIR   # GPU
    python -m hwmodels.validate comm --out DIR                        # >= 2 GPUs: NCCL all-reduce, all-to-all
    python -m hwmodels.validate compare [DIR] [--profile P]          # CPU: replay in the simulator
    python -m hwmodels.validate fit [--vllm]                          # CPU: fit the reference / vllm profile
    python -m hwmodels.validate report [--json FILE]                  # CPU: every error from committed data
    python -m hwmodels.validate waves [--mode wave|list]              # CPU: the wave-quantization test (rejected)
    python -m hwmodels.validate.slot_probe --out FILE.json            # GPU: decode attention vs the long sequence's slot
    python -m hwmodels.validate.slot_probe --report FILE.json         # CPU: its spread over slots, the 21/27 ms verdict

Modules: ``model`` (random-weight Llama from the catalogue), ``engine`` (the reference
continuous-batching engine: envs.core's scheduler, FlashAttention, CUDA graphs), ``run`` (loads of
the measured capacity), ``comm_bench`` (NCCL collectives), ``measured`` (the committed records),
``fit`` (engine profiles), ``floor`` (the iteration error no model of the loads can remove),
``waves`` (decode attention timed by CTA waves: tested, rejected), ``slot_probe`` and
``slot_probe_report`` (decode attention alone, timed with the long sequence at every slot), ``compare`` and ``published``
(simulator replays: the only modules of hwmodels that import envs, loaded lazily by the CLI), ``report``.
The measured data live in ``hwmodels/validate/data/``.
"""
