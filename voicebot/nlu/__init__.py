"""Natural-language understanding: MiniLM sentence embeddings, intents, entities.

* :mod:`voicebot.nlu.weights` loads the packaged MiniLM-L6 weights into numpy.
* :mod:`voicebot.nlu.reference` is a plain-numpy BERT forward pass (the test oracle).
* :mod:`voicebot.nlu.onnx_graph` builds the plain fp32 ONNX graph op by op.
* :mod:`voicebot.nlu.onnx_optimize` fuses, smooths (SmoothQuant) and int8-quantizes it.
* :mod:`voicebot.nlu.model_cache` builds the fp32 and int8 models into the cache.
* :mod:`voicebot.nlu.embedder` runs them with onnxruntime.
* :mod:`voicebot.nlu.classifier` is the few-shot embedding intent classifier.
* :mod:`voicebot.nlu.entities` extracts digits, numbers and yes/no (pure Python).

Nothing is imported here, so ``import voicebot.nlu`` stays cheap.
"""

__all__: list[str] = []
