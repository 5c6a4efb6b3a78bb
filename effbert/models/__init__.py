"""Model sources and loading shared by every method: where a teacher comes from and how its task head is built
(`teacher`), and loading any saved teacher or student directory through the Auto classes (`auto`)."""
