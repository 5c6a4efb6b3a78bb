"""Model sources and loading shared by every method: where a teacher comes from and how its task head is built
(`teacher`), loading any saved teacher or student directory through the Auto classes (`auto`), and a BERT-family
model's encoder and submodules swapped for the length of a block (`surgery`)."""
