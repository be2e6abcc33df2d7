"""After the push: the champion answers (predict, serve), every prediction is
logged, and monitor compares what is served with what was evaluated."""
