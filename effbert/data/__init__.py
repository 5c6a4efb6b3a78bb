"""Data shared by every method: the task registry (`tasks`), official-format readers (`glue`, `squad`, `corpus`),
where the files are (`sources`), tokenisation into splits (`prepare`, `qa_features`), reading prepared splits
(`prepared`) and hub downloads (`hub`)."""
