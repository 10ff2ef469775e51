"""Visual chat with LLaVA-NeXT: AnyRes preprocessing, conversation templates, chat backends."""
