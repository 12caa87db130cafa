"""One module per stage, each with one public `run(ctx, cfg) -> ctx`; their order lives in edgekd.pipeline.STAGES."""
