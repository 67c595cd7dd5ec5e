"""Development tooling kept out of the installed packages: the node and the trainer never import it."""
