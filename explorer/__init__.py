"""pebr explorer: a Streamlit app for inspecting rollouts, reward components and buckets."""

__all__: list[str] = []
