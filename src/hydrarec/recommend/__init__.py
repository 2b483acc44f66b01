"""The recommend side: what turns a trained model into recommendations.

``rerank``: stage two's fast path, the model's predictions for each user's candidates computed
factored, from outside the model (tested equal to its plain forward).
"""
