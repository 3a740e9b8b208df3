"""The paper's tables: Table 4's FLOPs and timing, Tables 3-5 at toy scale and the paper's published numbers."""
