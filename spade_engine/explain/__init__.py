"""Dense vs SPADE explanations: `compare.compare_maps` (the one computation of the Debugger and `spade explain`),
`panel` (the one PNG renderer of overlays, colour bars and panels) and `report` (`spade explain`'s offline report)."""
