"""The app shell above every pillar: the tab registry, the app's flags and their ``APP_*`` variables, the
Gradio ``Blocks`` and its launch, and the files a Hugging Face Space needs. Nothing imports this package."""
