"""The mind's runtime: the LLM client and, later, the CognitiveWeaver.

Not built yet (issues 5 and 7). Until it exists, ``doesNotUnderstand:``
answers with a clear ``DoesNotUnderstand`` error.
"""
