"""OpenMonetize: usage metering and prepaid-credit billing for AI SaaS, on Kafka."""
