"""Money logic, pure and in one place: amounts, burn tables, provider prices, rating.

No Kafka, Faust, HTTP or database imports here. The API's rating preview, the stream workers
and the replay tool all call these functions, so a figure can never depend on which path
computed it.
"""
