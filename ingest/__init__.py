"""The edge: receive a Huawei push, authenticate it, publish it to Kafka, answer 200 only once Kafka has it."""
