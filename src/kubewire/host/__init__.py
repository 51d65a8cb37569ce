"""The host layer: the only code that touches the kernel or spawns processes (netns, links, addresses,
routes, sysctls, processes in a namespace). Each effect sits behind a small protocol with a real
implementation and a faithful fake."""
