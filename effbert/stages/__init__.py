"""The DAG stages as recipes: each module reads its params, calls the library, writes its declared outputs and logs
to MLflow. The shared stages live here; a compression method's own stages live in its folder (`efficientbert`)."""
