"""DynaBERT's recipes: the DAG stage ``dynabert@<task>`` (`dynabert`) and the tool ``effbert dynabert-extract``
(`extract`), which writes one sub-network as its own model directory. The method's library is
`effbert.methods.dynabert`."""
